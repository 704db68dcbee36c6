"""The contrastive loss: NT-Xent over V views, with the cross-device gather."""

from simclr.losses.ntxent import ContrastiveOutput, NTXentLoss, gather_across_ranks

__all__ = ["ContrastiveOutput", "NTXentLoss", "gather_across_ranks"]
