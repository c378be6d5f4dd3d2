"""ZeroRedundancyOptimizer: ZeRO stage 1 (Rajbhandari et al., "ZeRO:
Memory optimizations toward training trillion parameter models", SC'20).

Each rank owns a shard of the parameters and keeps the optimizer state of
that shard only; after the gradients are averaged (DistributedDataParallel),
each rank steps its shard and broadcasts the updated parameters to the
others. The optimizer state per rank falls by the world size; the update of
every parameter is the one a single optimizer makes (the update is
elementwise), so the result is bit for bit the same as without sharding.
"""

from __future__ import annotations

from .. import distributed
from ..distributed import collectives, world
from ..tensor import Tensor, empty
from .optimizer import AdamW, Optimizer


def _partition(parameters: list, world_size: int) -> list:
    """The owner rank of each parameter: largest first, each to the rank
    with the fewest elements so far (ties: the lowest rank), so no rank holds
    more than an even share plus one parameter. The same on every rank."""
    owners = [0] * len(parameters)
    loads = [0] * world_size
    for i in sorted(range(len(parameters)), key=lambda i: -parameters[i].numel()):
        rank = loads.index(min(loads))
        owners[i] = rank
        loads[rank] += parameters[i].numel()
    return owners


class ZeroRedundancyOptimizer(Optimizer):
    """Shards ``optimizer_class`` (default AdamW) across the MPI ranks.

    ``params`` and ``**defaults`` are what ``optimizer_class`` takes
    (parameter groups included). Every rank passes the same parameters in
    the same order; ``param_groups`` holds all of them (a scheduler adjusts
    the learning rate here), ``optimizer`` is this rank's optimizer over the
    parameters it owns (None if it owns none). ``step()`` needs the averaged
    gradients on every rank, as DistributedDataParallel leaves them.

    Checkpoints: ``consolidate_state_dict(to)`` (every rank calls it)
    gathers the shards on rank ``to``, whose ``state_dict()`` then is the
    state dict an unsharded ``optimizer_class`` would have, so a run can
    resume with any number of ranks, sharded or not. ``load_state_dict``
    takes such a dict on every rank and keeps this rank's shard of it.
    """

    def __init__(self, params, optimizer_class=AdamW, **defaults) -> None:
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(
                f"ZeroRedundancyOptimizer: argument 'optimizer_class' expected an attnkit Optimizer "
                f"subclass, got {optimizer_class!r}"
            )
        # The class fills in and checks every group's hyperparameters.
        unsharded = optimizer_class(params, **defaults)
        super().__init__(unsharded.param_groups, unsharded.defaults)
        distributed.init()
        self.optimizer_class = optimizer_class
        self.rank, self.world_size = distributed.get_rank(), distributed.get_world_size()
        everything = self._all_parameters()
        self._owners = _partition(everything, self.world_size)
        owner_of = {id(p): owner for p, owner in zip(everything, self._owners)}
        # local group k is param_groups[self._local_groups[k]], restricted to this rank's parameters
        self._local_groups = []
        local = []
        for index, group in enumerate(self.param_groups):
            owned = [p for p in group["params"] if owner_of[id(p)] == self.rank]
            if owned:
                self._local_groups.append(index)
                local.append(dict(group, params=owned))
        self.optimizer = optimizer_class(local, **defaults) if local else None
        self._consolidated = None

    def _all_parameters(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def _sync_hyperparameters(self) -> None:
        if self.optimizer is None:
            return
        for local_group, index in zip(self.optimizer.param_groups, self._local_groups):
            for key, value in self.param_groups[index].items():
                if key != "params":
                    local_group[key] = value

    def step(self, closure=None):
        """Steps this rank's shard, then every rank receives every updated
        parameter from its owner."""
        loss = self._evaluate(closure)
        if self.optimizer is not None:
            self._sync_hyperparameters()
            self.optimizer.step()
        if self.world_size > 1:
            requests = [collectives.start_broadcast(p, owner) for p, owner in zip(self._all_parameters(), self._owners)]
            world.wait(requests, "ZeroRedundancyOptimizer's parameter broadcast")
        return loss

    def local_state_numel(self) -> int:
        """Elements of optimizer state tensors this rank holds."""
        if self.optimizer is None:
            return 0
        return sum(v.numel() for s in self.optimizer.state.values() for v in s.values() if isinstance(v, Tensor))

    # ------------------------------------------------------- state dict --
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gathers every rank's shard of the state on rank ``to`` (all ranks call it)."""
        self._sync_hyperparameters()
        index_of = {id(p): i for i, p in enumerate(self._all_parameters())}
        mine = {}
        if self.optimizer is not None:
            for p, entry in self.optimizer.state.items():
                mine[index_of[id(p)]] = entry
        # First what each entry holds (numbers as they are, tensors as their
        # dtype and shape), then the tensors themselves, straight from memory.
        layout = {
            i: {k: (("tensor", v.dtype.name, tuple(v.shape)) if isinstance(v, Tensor) else v) for k, v in entry.items()}
            for i, entry in mine.items()
        }
        layouts = collectives.gather_object(layout, root=to)
        requests = []
        if self.rank != to:
            for i in sorted(mine):
                for key in sorted(mine[i]):
                    if isinstance(mine[i][key], Tensor):
                        requests.append(collectives.start_send(mine[i][key], to))
            world.wait(requests, "ZeroRedundancyOptimizer.consolidate_state_dict")
            self._consolidated = None
            return
        state = {}
        for rank, ranks_layout in enumerate(layouts):
            for i in sorted(ranks_layout):
                entry = {}
                for key in sorted(ranks_layout[i]):
                    value = ranks_layout[i][key]
                    if isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor":
                        if rank == to:
                            entry[key] = mine[i][key]
                        else:
                            entry[key] = empty(value[2], dtype=value[1])
                            requests.append(collectives.start_receive(entry[key], rank))
                    else:
                        entry[key] = value
                state[i] = entry
        world.wait(requests, "ZeroRedundancyOptimizer.consolidate_state_dict")
        groups = []
        start = 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        self._consolidated = {"state": dict(sorted(state.items())), "param_groups": groups}

    def state_dict(self) -> dict:
        """The whole state, laid out as an unsharded optimizer's, on the rank
        that ``consolidate_state_dict`` gathered it to."""
        if self._consolidated is None:
            raise RuntimeError(
                f"ZeroRedundancyOptimizer.state_dict: rank {self.rank} holds no consolidated state; every rank "
                f"calls consolidate_state_dict(to=...) first, and the rank 'to' calls state_dict()"
            )
        return self._consolidated

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a whole (consolidated or unsharded) state dict; this rank keeps its shard."""
        name = "ZeroRedundancyOptimizer.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}: expected a dict with keys 'param_groups' and 'state'")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or [len(g.get("params", ())) for g in saved_groups] != [
            len(g["params"]) for g in self.param_groups
        ]:
            raise ValueError(f"{name}: the saved parameter groups do not match this optimizer's")
        # Saved parameter numbers -> this optimizer's parameters, group by group.
        parameter_of = {}
        for saved, group in zip(saved_groups, self.param_groups):
            parameter_of.update(zip(saved["params"], group["params"]))
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({key: value for key, value in saved.items() if key != "params"})
        self._consolidated = None
        if self.optimizer is None:
            return
        # The local optimizer numbers its own parameters in its group order.
        local_number = {id(p): n for n, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"])}
        local_state = {}
        for key, entry in state_dict["state"].items():
            p = parameter_of.get(key)
            if p is None:
                raise ValueError(f"{name}: the saved state names parameter {key!r}, which no group has")
            if id(p) in local_number:
                local_state[local_number[id(p)]] = entry
        local_groups = []
        for local_group, index in zip(self.optimizer.param_groups, self._local_groups):
            saved = {key: value for key, value in saved_groups[index].items() if key != "params"}
            saved["params"] = [local_number[id(p)] for p in local_group["params"]]
            local_groups.append(saved)
        self.optimizer.load_state_dict({"state": local_state, "param_groups": local_groups})


__all__ = ["ZeroRedundancyOptimizer"]
