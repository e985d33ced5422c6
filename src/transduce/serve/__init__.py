"""REST server and web page (``transduce serve``); needs the ``serve`` extra."""
