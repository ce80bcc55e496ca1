"""The paper's claim tested on phantom (issue #27): d in {1, 4, 16, 64} x lambda_R in
{0, 1e-4, 1e-3} x three seeds, 36 members with the learned rate in one program.

    python -m ae4ad_jax.main --config=configs/claim_phantom.py --workdir=runs/claim_phantom

Its report adds the code scores beside the reconstruction score (Table 1's AUROC
columns), claim.md (Spearman correlations of AUROC with the normal code's rate and
H(Z_norm), and the label-free choices) and claim.png. Short form of
`configs/benchmark.py:phantom,claim`.
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("phantom,claim")
