"""The recordings on other channel technologies: the same calls, with a trunk's and a phone's own
channels where the recordings have Local pairs standing in for them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telephony.simulator import Recording, frame_headers, stamp

# -- the recordings on other channel technologies ---------------------------------------------------


NAME_01, NAME_02 = "01-inbound-queue-answered", "02-abandoned-in-queue"


# The recordings' Local pairs that stand in for a trunk or a phone: the pair's name, the Uniqueids of
# its ;1 and ;2, and whom it stands for ("caller" for the resident calling in, an extension for an
# operator's phone, "far" for the number Careline dialled out to).
STAND_INS: dict[str, list[tuple[str, str, str, str]]] = {
    "01-inbound-queue-answered": [
        ("Local/12349@from-resident-00000000", "1795393745.0", "1795393745.1", "caller"),
        ("Local/8001@operators-00000001", "1795393746.2", "1795393746.3", "8001"),
    ],
    "02-abandoned-in-queue": [
        ("Local/12349@from-resident-00000002", "1795393768.4", "1795393768.5", "caller"),
        ("Local/8001@operators-00000003", "1795393769.6", "1795393769.7", "8001"),
        ("Local/8002@operators-00000004", "1795393781.8", "1795393781.9", "8002"),
    ],
    "03-emergency-button-userevent": [
        ("Local/123491@from-resident-00000005", "1795393786.10", "1795393786.11", "caller"),
        ("Local/8001@operators-00000006", "1795393786.12", "1795393786.13", "8001"),
    ],
    "04-outbound-callback-answered": [
        ("Local/8001@operators-00000007", "1795393799.14", "1795393799.15", "8001"),
        ("Local/13800138000@pstn-00000008", "1795393802.16", "1795393802.17", "far"),
    ],
    "05-originate-failed-busy": [
        ("Local/13700137000@pstn-0000000a", "1795393819.20", "1795393819.21", "far")
    ],
    "06-originate-failed-no-answer": [
        ("Local/13600136000@pstn-0000000c", "1795393822.24", "1795393822.25", "far")
    ],
    "08-care-call-ivr-dtmf-userevent": [
        ("Local/13800138001@pstn-00000010", "1795393842.32", "1795393842.33", "far")
    ],
}


@dataclass(frozen=True)
class Technology:
    """How a channel driver names a trunk's channel and a phone's (`n` counts channels)."""

    name: str
    trunk: str  # with {n} and {number}
    phone: str  # with {n} and {extension}
    interface: str  # with {extension}


TECHNOLOGIES = [
    Technology("pjsip", "PJSIP/trunk-{n:08x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"),
    Technology(
        "pjsip-named-trunk", "PJSIP/trunk-cmcc-{n:08x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"
    ),
    Technology("chan_sip", "SIP/trunk-{n:08x}", "SIP/{extension}-{n:08x}", "SIP/{extension}"),
    Technology("iax2", "IAX2/trunk-{n}", "IAX2/{extension}-{n}", "IAX2/{extension}"),
    Technology("dahdi-pri", "DAHDI/i1/{number}-{n:x}", "PJSIP/{extension}-{n:08x}", "PJSIP/{extension}"),
    Technology("dahdi-analog", "DAHDI/1-1", "SIP/{extension}-{n:08x}", "SIP/{extension}"),
]


PJSIP = TECHNOLOGIES[0]


def on_technology(name: str, frames: Sequence[bytes], technology: Technology) -> list[bytes]:
    """The recording `name` as it reads when its trunk and phones are real channels, not Local pairs.

    A pair's ;1 is what the dialler sees and ;2 runs the far side's dialplan. A caller's trunk channel
    is the one running the hotline's dialplan (;2), created first (;1's Uniqueid, the call's root);
    a phone's or a dialled number's channel is the dialled one (;1). The other half's frames, and the
    LocalBridge that pairs them, are not sent by a real channel, so they go.
    """
    counter = itertools.count(0x1A)
    names: dict[str, str] = {}
    ids: dict[str, str] = {}
    gone: set[str] = set()
    for pair, one, two, role in STAND_INS[name]:
        number = pair.split("/", 1)[1].split("@", 1)[0]
        if role == "caller":
            names[f"{pair};2"] = technology.trunk.format(n=next(counter), number="13800138000")
            ids[two] = one
            gone.add(one)
        else:
            template = technology.trunk if role == "far" else technology.phone
            names[f"{pair};1"] = template.format(n=next(counter), number=number, extension=role)
            gone.add(two)
            if role != "far":
                names[f"Local/{role}@operators"] = technology.interface.format(extension=role)
    out = []
    for frame in frames:
        headers = frame_headers(frame)
        event = headers.get("Event", "")
        if event == "LocalBridge" or {headers.get("Uniqueid"), headers.get("DestUniqueid")} & gone:
            continue
        for old in sorted(names, key=len, reverse=True):
            frame = frame.replace(old.encode(), names[old].encode())
        for old, new in ids.items():
            frame = re.sub(
                rb"(Uniqueid|Linkedid): " + re.escape(old.encode()) + rb"\r\n",
                rb"\1: " + new.encode() + rb"\r\n",
                frame + b"\r\n",
            )[:-2]
        out.append(frame)
    return out


def timeline(recording: Recording) -> list[tuple[float, bytes]]:
    """The recording's frames, each with when it was sent (seconds since the epoch), unstamped."""
    base = recording.connected_epoch
    return [(base + t, frame) for frame, t in zip(recording.frames, recording.times, strict=True)]


def stamped_at(timed: Iterable[tuple[float, bytes]]) -> list[bytes]:
    return [stamp(frame, at) for at, frame in timed]


def first(frames: Iterable[bytes], event: str, *needles: bytes) -> int:
    """Where the first `event` frame holding all of `needles` is."""
    for index, frame in enumerate(frames):
        if frame.startswith(f"Event: {event}\r\n".encode()) and all(n in frame for n in needles):
            return index
    raise LookupError(event)
