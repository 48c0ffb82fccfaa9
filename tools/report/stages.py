"""The naming contract between the telemetry writers and this report.

The venue pipeline stamps each hop and logs one HdrHistogram per stage per
interval, tagged ``Tag=<tag>``; the load generator logs its ``RoundTrip``.
Values are integer nanoseconds. ``STAGES`` lists the tags in pipeline order
with the names the report shows; a tag not listed here is still reported,
after the known ones, with a note that it is outside the contract.

Roles: ``pipeline`` stages are the hops a message walks through in order and
compete for the bottleneck mark; ``total`` is the venue's own stamp-to-stamp
time for the whole walk (what the pipeline stages should add up to);
``after`` is measured by the venue once the walk is over (the TX kick until
the frames left: not in TOTAL); ``client`` is measured outside the venue, by
the load generator.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One tag of the contract: what the log says, what the report shows."""

    tag: str
    name: str
    role: str  # "pipeline" | "total" | "after" | "client" | "unknown"


STAGES: tuple[Stage, ...] = (
    Stage("NetworkRX", "Network RX", "pipeline"),
    Stage("Deserialize", "Deserialize", "pipeline"),
    Stage("Validation", "Validation", "pipeline"),
    Stage("Matching", "Matching", "pipeline"),
    Stage("Serialize", "Serialize", "pipeline"),
    Stage("Journal", "Journal", "pipeline"),
    Stage("NetworkTX", "Network TX", "pipeline"),
    Stage("TOTAL", "TOTAL", "total"),
    Stage("TxCompletion", "TX completion", "after"),
    Stage("RoundTrip", "round trip", "client"),
)

_BY_TAG = {s.tag: s for s in STAGES}

# Untagged histograms (the hdrhistogram PyPI writer cannot write tags) are
# named after their file when the file stem is a contract tag (Matching.hlog).
UNTAGGED = "untagged"


def stage_for(tag: str) -> Stage:
    """The contract entry for ``tag``, or an ``unknown`` stage shown under its own tag."""
    return _BY_TAG.get(tag) or Stage(tag, tag, "unknown")


def order_key(tag: str) -> tuple[int, str]:
    """Sort key: contract tags in pipeline order, then unknown tags alphabetically."""
    for i, s in enumerate(STAGES):
        if s.tag == tag:
            return (i, "")
    return (len(STAGES), tag)


def is_known(tag: str) -> bool:
    return tag in _BY_TAG
