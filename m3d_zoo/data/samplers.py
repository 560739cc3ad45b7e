""" Identity-balanced P x K batch sampler (P identities, K tracklets each), the usual batch for triplet losses. """
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ['PKBatchSampler']


def _check_count(name: str, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')


class PKBatchSampler(Sampler[List[int]]):
    """ Batches of `num_pids` distinct identities with `num_instances` tracklets each.

    Each epoch, every identity's tracklets are shuffled and cut into groups of K (an identity with fewer than K
    tracklets is sampled with replacement up to K); batches take one group from each of P identities drawn at
    random among those with groups left, until fewer than P remain. The batches depend only on `seed` and the
    epoch (`set_epoch`), so every DDP rank builds the same list and takes its share (`rank::num_replicas`).

    Args:
        pids: Person label of every dataset item (e.g. `ClipDataset.pids`).
        num_pids: P, identities per batch (default 8, or `batch_size / num_instances` when `batch_size` is given).
        num_instances: K, tracklets per identity.
        seed: Base seed.
        num_replicas: Number of DDP processes.
        rank: This process's rank.
        batch_size: P x K, instead of `num_pids`; must be a multiple of `num_instances`.

    Raises:
        ValueError: A count is not an integer >= 1, `batch_size` is not a multiple of `num_instances` or disagrees
            with `num_pids`, the dataset has fewer than P identities, or `rank` is outside [0, num_replicas).
    """

    def __init__(
            self,
            pids: Sequence[int],
            num_pids: Optional[int] = None,
            num_instances: int = 4,
            seed: int = 0,
            num_replicas: int = 1,
            rank: int = 0,
            batch_size: Optional[int] = None,
    ):
        _check_count('num_instances (K, tracklets per identity)', num_instances)
        if batch_size is not None:
            _check_count('batch_size', batch_size)
            if batch_size % num_instances:
                lower = batch_size - batch_size % num_instances
                sizes = f'{lower} or {lower + num_instances}' if lower else f'{num_instances}'
                raise ValueError(
                    f'batch_size={batch_size} is not a multiple of num_instances={num_instances}: a P x K batch holds '
                    f'P identities x K tracklets each; use batch_size={sizes}, or another num_instances.')
            if num_pids is not None and num_pids * num_instances != batch_size:
                raise ValueError(f'num_pids={num_pids} and batch_size={batch_size} disagree with '
                                 f'num_instances={num_instances}: pass one of num_pids and batch_size.')
            num_pids = batch_size // num_instances
        num_pids = 8 if num_pids is None else num_pids
        _check_count('num_pids (P, identities per batch)', num_pids)
        _check_count('num_replicas', num_replicas)
        self.index_of = defaultdict(list)
        for i, p in enumerate(pids):
            self.index_of[int(p)].append(i)
        self.pid_list = sorted(self.index_of)
        if num_pids > len(self.pid_list):
            raise ValueError(f'P={num_pids} identities per batch requested, the dataset has {len(self.pid_list)}: '
                             f'use num_pids <= {len(self.pid_list)} (or a smaller batch_size).')
        if not 0 <= rank < num_replicas:
            raise ValueError(f'rank {rank} not in [0, {num_replicas})')
        self.num_pids = num_pids
        self.num_instances = num_instances
        self.batch_size = num_pids * num_instances
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._cache = None

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _all_batches(self) -> List[List[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        groups = {}
        for pid in self.pid_list:
            idxs = np.asarray(self.index_of[pid])
            idxs = rng.choice(idxs, size=k, replace=True) if len(idxs) < k else rng.permutation(idxs)
            n = len(idxs) // k  # the tail shorter than K is dropped, as in the usual identity samplers
            groups[pid] = [idxs[j * k:(j + 1) * k].tolist() for j in range(n)]
        batches = []
        avail = [p for p in self.pid_list if groups[p]]
        while len(avail) >= self.num_pids:
            chosen = rng.choice(len(avail), size=self.num_pids, replace=False)
            batch = []
            for c in chosen:
                batch.extend(groups[avail[c]].pop())
            batches.append(batch)
            avail = [p for p in avail if groups[p]]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        batches = self._all_batches()
        n = len(batches) // self.num_replicas  # equal counts on every rank, or DDP hangs at the last step
        yield from batches[self.rank::self.num_replicas][:n]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.num_replicas
