"""engine.recovery: the feed's latest messages, and MoldUDP64 re-requests answered from them."""
import random

import pytest

from engine import moldudp64
from engine._moldudp64 import lib
from engine.recovery import VERDICTS, Retransmissions, Verdict

SESSION = "NETIO00001"


def blocks(messages: list[bytes]) -> bytes:
    """The feed's block stream: 2-byte big-endian length + message, repeated."""
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def message(seq: int) -> bytes:
    """A message that names its own sequence number, 1 to 50 bytes long."""
    return seq.to_bytes(8, "big")[: 1 + seq % 8] * (1 + seq % 6)


ASKER = 0x0a000014          # 10.0.0.20


def ask(store: Retransmissions, sequence: int, count: int, session: str = SESSION, asker: int = ASKER,
        now_ns: int = 0):
    return store.answer(moldudp64.request(session, sequence, count), asker, now_ns)


def test_a_request_is_answered_with_the_messages_from_its_sequence_number_in_the_feeds_session():
    store = Retransmissions(SESSION, 64, 1400)
    store.add(1, blocks([message(s) for s in range(1, 31)]))
    packet, verdict, sent = ask(store, 7, 5)
    assert (verdict, sent) == (Verdict.ANSWERED, 5)
    p = moldudp64.decode(packet)
    assert (p.session, p.sequence, list(p.messages)) == (SESSION, 7, [message(s) for s in range(7, 12)])


def test_an_answer_is_one_packet_of_whole_messages_that_fits_a_feed_datagram():
    store = Retransmissions(SESSION, 64, max_payload=110)
    store.add(1, blocks([bytes(25)] * 10))
    packet, verdict, sent = ask(store, 1, 10)
    assert (verdict, sent, len(packet)) == (Verdict.ANSWERED, 3, 20 + 3 * 27)    # a fourth would pass 110
    packet, _, sent = ask(store, 9, 10)                                          # only 9 and 10 are there
    assert (moldudp64.decode(packet).sequence, sent) == (9, 2)


def test_the_oldest_messages_make_room_and_are_then_no_longer_held():
    store = Retransmissions(SESSION, 8, 1400)
    for seq in range(1, 21):
        store.add(seq, blocks([message(seq)]))
    assert store.held == range(13, 21)
    assert ask(store, 12, 1)[1:] == (Verdict.NOT_HELD, 0)
    assert ask(store, 21, 1)[1:] == (Verdict.NOT_HELD, 0)                        # not sent yet
    assert list(moldudp64.decode(ask(store, 13, 8)[0]).messages) == [message(s) for s in range(13, 21)]


def test_messages_that_wrap_round_the_byte_ring_come_back_whole():
    """Random lengths, added in random batches through a ring of 16 x 64 bytes many times over."""
    rng = random.Random(5)
    store = Retransmissions(SESSION, 16, 1400)
    sent, seq = {}, 1
    while seq < 2000:
        batch = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 63))) for _ in range(rng.randrange(1, 6))]
        store.add(seq, blocks(batch))
        sent.update(zip(range(seq, seq + len(batch)), batch))
        seq += len(batch)
        first = store.held.start
        got = moldudp64.decode(ask(store, first, len(store.held))[0]).messages
        assert list(got) == [sent[s] for s in range(first, seq)]
    assert len(store.held) <= 16


def test_a_burst_longer_than_the_ring_leaves_its_newest_messages_held():
    store = Retransmissions(SESSION, 16, 1400)           # 16 x 64 ring bytes
    store.add(1, blocks([message(s) * 2 for s in range(1, 41)]))
    first = store.held.start
    assert store.held.stop == 41 and 1 < first < 41
    assert list(moldudp64.decode(ask(store, first, 40)[0]).messages) == [message(s) * 2 for s in range(first, 41)]
    assert ask(store, first - 1, 1)[1] == Verdict.NOT_HELD


def test_a_stream_that_does_not_follow_the_newest_message_restarts_the_store():
    store = Retransmissions(SESSION, 64, 1400)
    store.add(1, blocks([message(s) for s in range(1, 6)]))
    store.add(100, blocks([message(100)]))
    assert store.held == range(100, 101)


@pytest.mark.parametrize("request_bytes, verdict", [
    (moldudp64.request("OTHER", 1, 1), Verdict.WRONG_SESSION),
    (moldudp64.request(SESSION, 1, 1)[:19], Verdict.MALFORMED),
    (moldudp64.request(SESSION, 1, 1) + b"x", Verdict.MALFORMED),
    (moldudp64.request(SESSION, 1, 1)[:18] + b"\x00\x00", Verdict.MALFORMED),     # a count of 0
    (moldudp64.request(SESSION, 1, 1)[:18] + b"\xff\xff", Verdict.MALFORMED),     # the end-of-session mark
])
def test_a_request_that_cannot_be_answered_says_why_and_sends_nothing(request_bytes, verdict):
    store = Retransmissions(SESSION, 64, 1400)
    store.add(1, blocks([message(1)]))
    assert store.answer(request_bytes, ASKER, 0) == (None, verdict, 0)


def test_each_asker_gets_a_tenth_of_a_seconds_worth_of_answers_at_once_then_its_rate():
    """1,000 answers a second: 100 at once, then one a millisecond; another asker has a
    budget of its own."""
    store = Retransmissions(SESSION, 64, 1400, answers_per_s=1000)
    store.add(1, blocks([message(s) for s in range(1, 11)]))
    t = 5 * 10**9
    assert [ask(store, 1, 1, now_ns=t)[1] for _ in range(100)] == [Verdict.ANSWERED] * 100
    assert ask(store, 1, 1, now_ns=t)[1:] == (Verdict.RATE_LIMITED, 0)
    assert ask(store, 1, 1, now_ns=t + 999_000)[1] == Verdict.RATE_LIMITED
    assert ask(store, 1, 1, now_ns=t + 1_000_000)[1] == Verdict.ANSWERED
    assert ask(store, 1, 1, now_ns=t + 1_000_000)[1] == Verdict.RATE_LIMITED
    assert ask(store, 1, 1, asker=ASKER + 1, now_ns=t)[1] == Verdict.ANSWERED
    assert [ask(store, 1, 1, now_ns=t + 10**9)[1] for _ in range(100)] == [Verdict.ANSWERED] * 100   # refilled


def test_all_askers_together_get_the_venues_budget_and_no_more():
    """20 answers a second in all (2 at once), 10 to each asker (1 at once): of three
    askers at once the third is dropped as VENUE_LIMITED, then one answer goes every
    50 ms to whichever asks; an asker over its own budget is RATE_LIMITED and takes
    nothing from the venue's."""
    store = Retransmissions(SESSION, 64, 1400, answers_per_s=10, total_answers_per_s=20)
    store.add(1, blocks([message(1)]))
    t = 5 * 10**9
    assert [ask(store, 1, 1, asker=ASKER + k, now_ns=t)[1] for k in range(3)] == \
        [Verdict.ANSWERED, Verdict.ANSWERED, Verdict.VENUE_LIMITED]
    assert ask(store, 1, 1, asker=ASKER, now_ns=t + 50_000_000)[1] == Verdict.RATE_LIMITED
    assert ask(store, 1, 1, asker=ASKER + 2, now_ns=t + 50_000_000)[1] == Verdict.ANSWERED
    assert ask(store, 1, 1, asker=ASKER + 3, now_ns=t + 50_000_000)[1] == Verdict.VENUE_LIMITED
    assert ask(store, 1, 1, asker=ASKER + 3, now_ns=t + 100_000_000)[1] == Verdict.ANSWERED


def test_a_venue_wide_budget_alone_limits_all_askers_together():
    store = Retransmissions(SESSION, 64, 1400, total_answers_per_s=10)     # one at once, in all
    store.add(1, blocks([message(1)]))
    assert ask(store, 1, 1, asker=ASKER)[1] == Verdict.ANSWERED
    assert ask(store, 1, 1, asker=ASKER + 1)[1] == Verdict.VENUE_LIMITED
    assert ask(store, 1, 1, asker=ASKER + 1, now_ns=100_000_000)[1] == Verdict.ANSWERED


def test_budgets_spent_before_the_clock_steps_back_do_not_hold_answers_back_after():
    store = Retransmissions(SESSION, 64, 1400, answers_per_s=10, total_answers_per_s=10)
    store.add(1, blocks([message(1)]))
    t = 20 * 10**9
    assert ask(store, 1, 1, now_ns=t)[1] == Verdict.ANSWERED
    assert ask(store, 1, 1, now_ns=t)[1] == Verdict.RATE_LIMITED
    assert ask(store, 1, 1, now_ns=t - 10**10)[1] == Verdict.ANSWERED      # ten seconds back


def test_the_verdicts_are_the_c_stores_in_its_order():
    assert len(VERDICTS) == lib.MOLD_Q_N
    assert VERDICTS.index(Verdict.RATE_LIMITED) == lib.MOLD_Q_RATE_LIMITED
    assert VERDICTS.index(Verdict.VENUE_LIMITED) == lib.MOLD_Q_VENUE_LIMITED


def test_requests_that_are_not_answered_take_nothing_from_the_budget():
    store = Retransmissions(SESSION, 64, 1400, answers_per_s=10)     # one at once
    store.add(1, blocks([message(1)]))
    assert ask(store, 2, 1)[1] == Verdict.NOT_HELD
    assert ask(store, 1, 1, session="OTHER")[1] == Verdict.WRONG_SESSION
    assert ask(store, 1, 1)[1] == Verdict.ANSWERED
    assert ask(store, 1, 1)[1] == Verdict.RATE_LIMITED


def test_without_a_limit_every_answerable_request_is_answered():
    store = Retransmissions(SESSION, 64, 1400)
    store.add(1, blocks([message(1)]))
    assert {ask(store, 1, 1)[1] for _ in range(10_000)} == {Verdict.ANSWERED}


def test_the_store_holds_a_power_of_two_of_messages():
    with pytest.raises(ValueError, match="power of two"):
        Retransmissions(SESSION, 1000, 1400)
