"""A researcher's own artefact, declared in a file of its own and nowhere else: two arms and one comparison.
`mer-nb reproduce --artefacts tests/data/toy_artefact.py --only toy` makes it (tests/test_registry.py)."""
from mer_nb.experiments import Arm, Artefact, register_artefact

register_artefact(Artefact(
    'toy', 'A toy table: HTNet with and without LAPE',
    against_paper='a toy: not in the paper.',
    arms=lambda exp: [Arm('HTNet'), Arm('HTNet+LAPE', model_kw={'pos_emb': 'lape'})],
    comparisons=lambda exp, arms: [{'name': 'HTNet+LAPE vs HTNet', 'a': {'method': 'HTNet'}, 'b': {'method': 'HTNet+LAPE'}}]))
