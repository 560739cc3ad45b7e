""" Batch samplers for training: identity-balanced P x K batches (the usual batch for triplet losses) and plain
shuffled batches, for one process or split across DDP ranks.

Both build the same global batches on every rank, from the seed and the epoch alone, and give each rank its slice
of every batch: the global batch, hence the recipe's learning rate, does not depend on the number of processes,
every rank runs the same number of steps (or DDP hangs at the last one), and a resumed run replays the same
batches. A P x K batch is split by whole identities, so every rank's slice still holds K tracklets of each of its
identities, which the batch-hard triplet loss mines within.
"""
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ['PKBatchSampler', 'RandomBatchSampler']


def _check_count(name: str, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')


def _check_split(what: str, n: int, num_replicas: int, unit: str):
    if n % num_replicas:
        raise ValueError(
            f'{what} = {n} {unit} cannot be split evenly across {num_replicas} processes: use a multiple of '
            f'{num_replicas} (e.g. {max(num_replicas, n - n % num_replicas)}), or another --nproc_per_node.')


def _check_ranks(num_replicas, rank):
    _check_count('num_replicas', num_replicas)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
        raise ValueError(f'rank must be an integer in [0, {num_replicas}) (num_replicas={num_replicas}), got {rank!r}')


def _resolve_num_pids(num_pids, num_instances: int, batch_size) -> int:
    """P from `num_pids` or `batch_size` (= P x K), checked; 8 when neither is given."""
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
    return num_pids


class _SplitBatchSampler(Sampler[List[int]]):
    """Global batches that depend only on (seed, epoch); each rank yields its contiguous slice of every one."""

    def __init__(self, share: int, seed: int, num_replicas: int, rank: int):
        self.share = share
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start = 0
        self._cache = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Yield the batches of `epoch`, from its batch `start` on (the ones before were done by a stopped run)."""
        self.epoch = epoch
        self.start = start

    def _build_batches(self, rng: np.random.Generator) -> List[List[int]]:
        raise NotImplementedError

    def _global_batches(self) -> List[List[int]]:
        """This epoch's batches, all ranks together (the batches of a one-process run)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._build_batches(np.random.default_rng([self.seed, self.epoch])))
        return self._cache[1]

    def __iter__(self) -> Iterator[List[int]]:
        lo = self.rank * self.share
        for batch in self._global_batches()[self.start:]:
            yield batch[lo:lo + self.share]

    def __len__(self) -> int:
        return max(0, len(self._global_batches()) - self.start)



class PKBatchSampler(_SplitBatchSampler):
    """ Batches of `num_pids` distinct identities with `num_instances` tracklets each (P x K), split across ranks.

    Each epoch, every identity's tracklets are shuffled and cut into groups of K (an identity with fewer than K
    tracklets is sampled with replacement up to K); batches take one group from each of P identities drawn at
    random among those with groups left, until fewer than P remain. Under DDP each rank yields P / num_replicas
    whole identities of every batch.

    Args:
        pids: Person label of every dataset item (e.g. `ClipDataset.pids`).
        num_pids: P, identities per global batch (default 8, or `batch_size / num_instances` when `batch_size` is
            given).
        num_instances: K, tracklets per identity.
        seed: Base seed; the batches depend only on it and the epoch (`set_epoch`).
        num_replicas: Number of DDP processes.
        rank: This process's rank.
        batch_size: P x K, instead of `num_pids`; must be a multiple of `num_instances`.

    Raises:
        ValueError: A count is not an integer >= 1, `batch_size` is not a multiple of `num_instances` or disagrees
            with `num_pids`, the dataset has fewer than P identities, P is not a multiple of `num_replicas`, or
            `rank` is outside [0, num_replicas).
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
        num_pids = _resolve_num_pids(num_pids, num_instances, batch_size)
        _check_ranks(num_replicas, rank)
        self.index_of = defaultdict(list)
        for i, p in enumerate(pids):
            self.index_of[int(p)].append(i)
        self.pid_list = sorted(self.index_of)
        if num_pids > len(self.pid_list):
            raise ValueError(f'P={num_pids} identities per batch requested, the dataset has {len(self.pid_list)}: '
                             f'use num_pids <= {len(self.pid_list)} (or a smaller batch_size).')
        _check_split('P (identities per batch: batch size / num_instances)', num_pids, num_replicas, 'identities')
        super().__init__(num_pids // num_replicas * num_instances, seed, num_replicas, rank)
        self.num_pids = num_pids
        self.num_instances = num_instances
        self.batch_size = num_pids * num_instances

    def _build_batches(self, rng: np.random.Generator) -> List[List[int]]:
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
        return batches



class RandomBatchSampler(_SplitBatchSampler):
    """Shuffled batches of `batch_size` items (the last, incomplete one dropped), split across ranks.

    Args:
        num_items: Dataset length.
        batch_size: Global batch size (all ranks together).
        seed: Base seed; the order depends only on it and the epoch (`set_epoch`).
        num_replicas: Number of DDP processes.
        rank: This process's rank.

    Raises:
        ValueError: A count is not an integer >= 1, `batch_size` is not a multiple of `num_replicas`, or `rank` is
            outside [0, num_replicas).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        _check_count('batch_size', batch_size)
        _check_ranks(num_replicas, rank)
        _check_split('the batch size', batch_size, num_replicas, 'clips')
        super().__init__(batch_size // num_replicas, seed, num_replicas, rank)
        self.num_items = num_items
        self.batch_size = batch_size

    def _build_batches(self, rng: np.random.Generator) -> List[List[int]]:
        order = rng.permutation(self.num_items)
        return [order[i * self.batch_size:(i + 1) * self.batch_size].tolist()
                for i in range(self.num_items // self.batch_size)]
