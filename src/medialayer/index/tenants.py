"""Which tenant each key belongs to, so one index per kind serves every tenant as a filter.

One index per tenant cost each tenant the index's fixed tables (tens of MB for the keypoint
tier) in every process; here a tenant costs a dict entry and every key 4 bytes.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from medialayer.index.snapshot import IndexState

_NONE = 0  # tenant ids start at 1, so a zeroed array means "no key here"


class TenantMap:
    """Tenant of every key (int64 >= 0), as a small integer in one array indexed by key."""

    def __init__(self) -> None:
        self._id_of: dict[str, int] = {}
        self._counts: list[int] = [0]
        self._of = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return sum(self._counts[1:])

    def __contains__(self, key: int) -> bool:
        return 0 <= key < len(self._of) and int(self._of[key]) != _NONE

    def count(self, tenant: str) -> int:
        tid = self._id_of.get(tenant)
        return 0 if tid is None else self._counts[tid]

    def set_many(self, keys: npt.NDArray[np.int64], tenant: str) -> None:
        """Give `keys` (distinct, not yet mapped) to `tenant`."""
        if keys.size == 0:
            return
        tid = self._id(tenant)
        self._reach(int(keys.max()))
        self._of[keys] = tid
        self._counts[tid] += int(keys.size)

    def set_named(self, keys: npt.NDArray[np.int64], tenants: Collection[str]) -> None:
        """Give each of `keys` (distinct, not yet mapped) the tenant at its place in `tenants`:
        a start-up batch of many tenants in one pass, not one `set_many` per tenant."""
        if keys.size == 0:
            return
        for tenant in set(tenants).difference(self._id_of):
            self._id(tenant)
        ids = np.fromiter(map(self._id_of.__getitem__, tenants), np.int32, keys.size)
        self._reach(int(keys.max()))
        self._of[keys] = ids
        for tid, added in enumerate(np.bincount(ids, minlength=len(self._counts)).tolist()):
            self._counts[tid] += added

    def drop(self, key: int) -> bool:
        if key not in self:
            return False
        self._counts[int(self._of[key])] -= 1
        self._of[key] = _NONE
        return True

    def mask(self, keys: npt.NDArray[np.int64], tenant: str) -> npt.NDArray[np.bool_]:
        """Which of `keys` belong to `tenant`."""
        tid = self._id_of.get(tenant, -1)
        inside = (keys >= 0) & (keys < len(self._of))
        found = np.zeros(keys.shape, bool)
        found[inside] = self._of[keys[inside]] == tid
        return found

    def nbytes(self) -> int:
        return int(self._of.nbytes)

    def state(self) -> IndexState:
        """For a snapshot: the array (written in place, so mapped copy-on-write) and the
        tenants' names and counts."""
        names = sorted(self._id_of, key=self._id_of.__getitem__)
        return IndexState({"of": self._of}, {"format": 1, "names": names,
                                             "counts": list(self._counts)}, frozenset({"of"}))

    def load_state(self, state: IndexState) -> None:
        names, counts = list(state.meta.get("names", ())), list(state.meta.get("counts", ()))
        of = state.arrays.get("of")
        if state.meta.get("format") != 1 or len(counts) != len(names) + 1:
            raise ValueError("the state is not a tenant map's")
        if of is None or of.dtype != np.int32 or of.ndim != 1 or not of.flags.writeable:
            raise ValueError("a tenant map's state needs a writable 1-D int32 array")
        if len(self):
            raise ValueError("only an empty tenant map can take a state")
        self._id_of = {name: tid for tid, name in enumerate(names, 1)}
        self._counts = [int(c) for c in counts]
        self._of = of

    def _id(self, tenant: str) -> int:
        tid = self._id_of.setdefault(tenant, len(self._counts))
        if tid == len(self._counts):
            self._counts.append(0)
        return tid

    def _reach(self, top: int) -> None:
        """Make room for keys up to `top`, growing by half at least (amortised)."""
        if top >= len(self._of):
            grown = np.zeros(max(top + 1, len(self._of) + len(self._of) // 2), np.int32)
            grown[: len(self._of)] = self._of
            self._of = grown
