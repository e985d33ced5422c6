"""Beam search with its tree recorded, for the web page.

:func:`decode_with_tree` is ``Translator.decode_sources`` with a
:class:`~transduce.search.BeamTree` passed to the search; :func:`tree_json`
turns one sentence's recording into what ``/api/translate`` returns with
``"tree": true``.
"""
from __future__ import annotations

from .. import search
from ..config import DecodeOptions
from ..translator import Translation
from ..vocab import EOS


def decode_with_tree(translator, batch: list, opts: DecodeOptions) -> tuple[list[Translation], list[dict]]:
    """Beam-search a batch of tokenized sources (``Translator.tokenize``) -> the
    Translations (as ``Translator.translate`` gives them) and one tree per source."""
    tree = search.BeamTree()
    results = translator.decode_sources(batch, opts, tree=tree)
    vocab = translator.tgt_codec.vocab
    trees = [tree_json(tree.steps.get(i, []), vocab.encode(r.tokens), vocab.itos)
             for i, r in enumerate(results)]
    return results, trees


def best_path(steps: list[list[search.TreeNode]], tokens: list[int]) -> list[int]:
    """Index of the best hypothesis' node at each step, following ``tokens`` (then
    EOS) from slot 0; ends at its EOS node, or at its last kept node when it was cut
    at the length limit."""
    path, slot = [], 0
    for t, nodes in enumerate(steps):
        want = tokens[t] if t < len(tokens) else EOS
        hit = next((j for j, n in enumerate(nodes) if n.parent == slot and n.token == want
                    and n.status == ("finished" if want == EOS else "kept")), None)
        if hit is None:
            break
        path.append(hit)
        if want == EOS:
            break
        slot = nodes[hit].slot
    return path


def tree_json(steps: list[list[search.TreeNode]], tokens: list[int], itos: list[str]) -> dict:
    """{"steps": [[{"parent", "token", "score", "status", "slot"}, ...] per step],
    "path": node index per step of the best hypothesis}; tokens as pieces."""
    def piece(i: int) -> str:
        return itos[i] if 0 <= i < len(itos) else "<unk>"

    return {"steps": [[{"parent": n.parent, "token": piece(n.token), "score": n.score,
                        "status": n.status, "slot": n.slot} for n in nodes] for nodes in steps],
            "path": best_path(steps, tokens)}
