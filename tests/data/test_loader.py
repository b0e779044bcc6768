"""The training stream: one sample order per epoch, each step's global batch cut across the data-parallel ranks."""

import itertools

import numpy as np
import pytest
import torch

from lightningllm.data.loader import WINDOW_CHUNKS, RankBatches, TrainLoader, epoch_order
from lightningllm.model import IGNORE_INDEX

CHUNKS = [7, 5, 9, 3, 6]  # samples per chunk: 30 in all


class Samples:
    """Sample ``i`` as (inputs, targets): inputs hold ``i``, so a batch names the samples it holds."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((4,), i), torch.full((4,), -i - 1)


def stream(batch_size, rank=0, ranks=1, num_workers=0, shuffle=True, epoch=0, chunks=CHUNKS):
    return TrainLoader(
        RankBatches(Samples(), chunks, batch_size, rank, ranks, seed=3, shuffle=shuffle), num_workers, epoch
    )


def ids(batch) -> list[int]:
    inputs, targets = batch
    assert inputs.shape == targets.shape == (len(inputs), 4)
    assert torch.equal(targets, -inputs - 1)
    return inputs[:, 0].tolist()


def test_an_epoch_order_is_a_seeded_permutation_of_every_sample_that_keeps_windows_of_chunks_together():
    order = epoch_order(CHUNKS, epoch=0, seed=3, shuffle=True)
    assert sorted(order) == list(range(30))
    assert np.array_equal(order, epoch_order(CHUNKS, 0, 3, True))
    assert not np.array_equal(order, epoch_order(CHUNKS, 1, 3, True))  # each epoch its own order
    assert not np.array_equal(order, epoch_order(CHUNKS, 0, 4, True))
    assert np.array_equal(epoch_order(CHUNKS, 5, 3, False), np.arange(30))
    many = [2] * (3 * WINDOW_CHUNKS)  # three windows: each holds the samples of WINDOW_CHUNKS whole chunks
    order = epoch_order(many, 0, 3, True).reshape(3, -1) // 2  # the chunk of each sample
    for window in order:
        assert sorted(np.unique(window, return_counts=True)[1]) == [2] * WINDOW_CHUNKS
        assert not np.array_equal(window, np.sort(window))  # shuffled within the window


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_take_disjoint_slices_of_each_step_that_together_are_one_process_with_the_global_batch(ranks):
    single = [ids(batch) for batch in stream(batch_size=2 * ranks)]
    shares = [[ids(batch) for batch in stream(2, rank, ranks)] for rank in range(ranks)]
    assert len(single) == 30 // (2 * ranks) and all(len(share) == len(single) for share in shares)
    for step, batch in enumerate(single):  # step by step, the ranks' batches are the global batch
        assert sum((share[step] for share in shares), []) == batch
    seen = [i for batch in single for i in batch]
    assert len(set(seen)) == len(seen) == 30 - 30 % (2 * ranks)  # no sample twice; only the last N mod G left out


def test_loader_workers_hand_out_the_same_steps_in_the_same_order():
    assert [ids(b) for b in stream(4, num_workers=2)] == [ids(b) for b in stream(4, num_workers=0)]


def test_each_iteration_is_the_next_epoch_in_its_own_order():
    loader = stream(4)
    first, second = [ids(b) for b in loader], [ids(b) for b in loader]
    assert first != second and len(first) == len(second) == len(loader) == 7
    assert first == [ids(b) for b in stream(4, epoch=0)] and second == [ids(b) for b in stream(4, epoch=1)]


def consume(loader, steps):
    iterator = iter(loader)
    return [ids(next(iterator)) for _ in range(steps)]


@pytest.mark.parametrize("ranks, batch_size, num_workers", [(1, 4, 0), (2, 2, 1), (1, 2, 0), (4, 1, 0)])
def test_a_saved_position_resumes_at_the_next_sample_on_any_ranks_batch_size_or_workers(ranks, batch_size, num_workers):
    before = stream(4)
    done = consume(before, 3)  # three steps of 4, as if a checkpoint were saved after step 3
    state = before.state_dict()
    assert state["epoch"] == 0 and state["sample"] == 12
    epochs = []
    for rank in range(ranks):  # every rank restores the same state and takes its own share
        loader = stream(batch_size, rank, ranks, num_workers)
        loader.load_state_dict(state)
        epochs.append([[ids(batch) for batch in loader] for _ in range(2)])  # the rest of epoch 0, then epoch 1
    for epoch, start in ((0, 12), (1, 0)):
        merged = [i for step in zip(*(share[epoch] for share in epochs), strict=True) for batch in step for i in batch]
        order = epoch_order(CHUNKS, epoch, seed=3, shuffle=True).tolist()
        assert merged == order[start : start + (30 - start) // (batch_size * ranks) * batch_size * ranks]
    assert sum(done, []) == epoch_order(CHUNKS, 0, 3, True).tolist()[:12]


def test_a_position_at_the_end_of_an_epoch_resumes_at_the_start_of_the_next():
    loader = stream(4)
    list(loader)
    state = loader.state_dict()
    resumed = stream(4)
    resumed.load_state_dict(state)
    assert [ids(b) for b in resumed] == [ids(b) for b in stream(4, epoch=1)]


def test_a_position_from_another_stream_is_refused():
    state = stream(4).state_dict()
    with pytest.raises(ValueError, match=r"^cannot resume the data position: the checkpoint's training stream"):
        stream(4, chunks=[7, 5]).load_state_dict(state)
    with pytest.raises(ValueError, match=r"^cannot resume the data position"):
        stream(4).load_state_dict({"current_epoch": 0, "num_samples_yielded": 8})  # litdata's loader state


@pytest.mark.parametrize("ranks, batch_size", [(1, 8), (2, 4), (4, 3)])
def test_evaluation_reads_every_sample_once_and_pads_the_last_step_with_targets_that_weigh_nothing(ranks, batch_size):
    shares = [
        list(RankBatches(Samples(), CHUNKS, batch_size, rank, ranks, pad_last=True, seed=0, shuffle=False))
        for rank in range(ranks)
    ]
    steps = -(-30 // (batch_size * ranks))
    assert all(len(share) == steps for share in shares)  # every rank the same number of full batches
    rows = [
        (int(x[0]), int(y[0]))
        for share in shares
        for inputs, targets in share
        for x, y in zip(inputs, targets, strict=True)
    ]
    real = sorted(i for i, t in rows if t != IGNORE_INDEX)
    assert real == list(range(30))  # each sample once
    assert len(rows) - 30 == steps * batch_size * ranks - 30  # the rest is padding, with no target


WIDTHS = np.array([1 + (7 * i) % 5 for i in range(30)])  # records of 1 to 5 inputs


class Records:
    """Record ``i``: ``WIDTHS[i]`` inputs that hold ``i``, targets ``-i - 1``."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((int(WIDTHS[i]),), i), torch.full((int(WIDTHS[i]),), -i - 1)


def records(batch_size, rank=0, ranks=1, pad_last=True, shuffle=True, group=0):
    return RankBatches(
        Records(), CHUNKS, batch_size, rank, ranks, pad_last=pad_last, widths=WIDTHS, pad_id=99, group_by_length=group,
        seed=3, shuffle=shuffle,
    )  # fmt: skip


def record_ids(batch) -> list[int]:
    """The records of a batch, each row checked: the record, then padding (inputs 99, no targets)."""
    out = []
    for x, y in zip(*batch, strict=True):
        if (y == IGNORE_INDEX).all():  # a row that fills the last step
            assert (x == 99).all()
            continue
        i, n = int(x[0]), int(WIDTHS[int(x[0])])
        assert (x[:n] == i).all() and (y[:n] == -i - 1).all() and (x[n:] == 99).all() and (y[n:] == IGNORE_INDEX).all()
        out.append(i)
    return out


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_records_are_padded_to_the_longest_of_their_step_the_same_on_every_rank(ranks):
    shares = [list(records(2, rank, ranks)) for rank in range(ranks)]
    order = epoch_order(CHUNKS, 0, seed=3, shuffle=True)
    global_batch = 2 * ranks
    assert all(len(share) == -(-30 // global_batch) for share in shares)  # the last, partial step is kept
    for step, batches in enumerate(zip(*shares, strict=True)):
        width = int(WIDTHS[order[step * global_batch : (step + 1) * global_batch]].max())
        assert all(inputs.shape == targets.shape == (2, width) for inputs, targets in batches)
    seen = [i for share in shares for batch in share for i in record_ids(batch)]
    assert sorted(seen) == list(range(30))  # every record once


def test_a_training_stream_of_records_keeps_its_last_partial_step_and_resumes_into_it():
    loader = TrainLoader(records(4))
    assert len(loader) == 8  # 30 records: 7 full steps and one of 2
    iterator = iter(loader)
    done = [record_ids(next(iterator)) for _ in range(7)]
    state = loader.state_dict()
    assert state["sample"] == 28
    resumed = TrainLoader(records(4))
    resumed.load_state_dict(state)
    rest, following = [[record_ids(batch) for batch in resumed] for _ in range(2)]
    order = epoch_order(CHUNKS, 0, seed=3, shuffle=True).tolist()
    assert sum(done, []) + sum(rest, []) == order and len(rest) == 1  # the partial step, not the next epoch
    assert sum(following, []) == epoch_order(CHUNKS, 1, seed=3, shuffle=True).tolist()


@pytest.mark.parametrize("shuffle", [True, False])
def test_grouped_by_length_each_run_of_steps_holds_its_samples_sorted_into_steps_and_pads_less(shuffle):
    plain = [record_ids(batch) for batch in TrainLoader(records(2, shuffle=shuffle))]
    grouped = [record_ids(batch) for batch in TrainLoader(records(2, shuffle=shuffle, group=3))]
    order = epoch_order(CHUNKS, 0, seed=3, shuffle=shuffle)
    assert sum(plain, []) == order.tolist()
    for first in range(0, 15, 3):  # 15 steps of 2: 5 runs of 3 steps
        run = order[first * 2 : (first + 3) * 2]
        steps = grouped[first : first + 3]
        assert sorted(sum(steps, [])) == sorted(run.tolist())  # the same samples, moved within the run only
        spans = sorted((min(WIDTHS[s]), max(WIDTHS[s])) for s in steps)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # slices of the run's sorted lengths
    assert grouped != plain
    padded = [sum(len(step) * max(WIDTHS[step]) for step in stream) for stream in (plain, grouped)]
    assert padded[1] < padded[0]


def test_a_grouped_stream_keeps_its_last_partial_step_last_and_resumes_exactly_on_other_ranks():
    whole = [record_ids(batch) for batch in TrainLoader(records(4, group=3))]
    assert [len(step) for step in whole] == [4] * 7 + [2]  # 30 records; the partial step stays last
    loader = TrainLoader(records(4, group=3))
    iterator = iter(loader)
    done = [record_ids(next(iterator)) for _ in range(4)]
    state = loader.state_dict()
    halves = [TrainLoader(records(2, rank, 2, group=3)) for rank in range(2)]  # 2 ranks x 2 = 1 x 4
    for half in halves:
        half.load_state_dict(state)
    rest = [a + b for a, b in zip(*[[record_ids(batch) for batch in half] for half in halves], strict=True)]
    assert done + rest == whole
    ungrouped = TrainLoader(records(4))
    with pytest.raises(ValueError, match="group_by_length"):
        ungrouped.load_state_dict(state)
    old = {key: value for key, value in TrainLoader(records(4)).state_dict().items() if key != "group_by_length"}
    ungrouped.load_state_dict(old)  # a checkpoint from before the setting resumes ungrouped


def test_grouping_packed_windows_is_refused():
    with pytest.raises(ValueError, match="group_by_length needs the samples' widths"):
        RankBatches(Samples(), CHUNKS, 2, 0, 1, group_by_length=4, seed=3, shuffle=True)
