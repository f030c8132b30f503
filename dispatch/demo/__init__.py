"""The Hohhot (呼和浩特) demo floor: a realistic registry built from a seed in seconds.

`careline demo-data` calls `build_demo_floor`; `careline serve --demo` calls
`prepare_demo_floor`, which builds the floor on first start only and prints
fresh demo log-ins every time.
"""

from dispatch.demo.access import DemoAccess, prepare_demo_floor
from dispatch.demo.floor import DemoFloorError, DemoSummary, build_demo_floor, build_demo_floor_if_empty

__all__ = [
    "DemoAccess",
    "DemoFloorError",
    "DemoSummary",
    "build_demo_floor",
    "build_demo_floor_if_empty",
    "prepare_demo_floor",
]
