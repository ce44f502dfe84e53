"""SAE training options: defaults that run, and one clear error per bad value."""

import pytest

from sparsecircuits.errors import SAEError
from sparsecircuits.sae.config import SAETrainConfig


def test_defaults_are_valid_and_round_trip():
    cfg = SAETrainConfig()
    cfg.check()
    assert SAETrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "change, message",
    [
        ({"k": 0}, "k must be >= 1"),
        ({"tokens": -5}, "tokens must be >= 1"),
        ({"lr": -1.0}, "lr must be >= 0"),
        ({"lr": float("nan")}, "lr must be a finite float"),
        ({"k": "8"}, "k must be a finite int"),
        ({"batch_topk": 1}, "batch_topk must be a finite bool"),
        ({"b_dec_init": "median"}, "b_dec_init must be one of"),
        ({"threshold_lr": 0.0}, "threshold_lr must be in (0, 1]"),
    ],
)
def test_bad_values_are_refused(change, message):
    with pytest.raises(SAEError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SAETrainConfig().replace(**change).check()


def test_unknown_keys_in_a_saved_config_are_refused():
    with pytest.raises(SAEError, match="unknown SAE training option 'kk'"):
        SAETrainConfig.from_dict({**SAETrainConfig().to_dict(), "kk": 3})


def test_k_must_be_below_d_sae():
    SAETrainConfig(k=255, expansion=8).check_for(32)
    with pytest.raises(SAEError, match="k=256 must be smaller than d_sae=256"):
        SAETrainConfig(k=256, expansion=8).check_for(32)


def test_learning_rate_follows_gao_et_al_unless_given():
    assert SAETrainConfig().learning_rate(2**14) == pytest.approx(2e-4)
    assert SAETrainConfig().learning_rate(2**12) == pytest.approx(4e-4)
    assert SAETrainConfig(lr=1e-3).learning_rate(2**12) == 1e-3
