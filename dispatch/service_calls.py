"""The service lane's calls, wired in one place for the composition root (dispatch/service.py).

Call tasks (follow-up rating calls, care plans' care calls) run on the shared deadline
runner; `BusWatch` only hurries them when Asterisk reports a try's result.
`wire_service_calls` registers the deadline handlers and returns the listening components
(that watch, and the one using calls from residents' own phones as visit evidence) for the
service to start before the runner and telephony.
"""

from __future__ import annotations

from dispatch.alert_desk import AlertDesk
from dispatch.alert_follow_ups import AlertFollowUpHooks
from dispatch.call_evidence import CallEvidence
from dispatch.call_task_steps import BusWatch, CallTaskSteps
from dispatch.call_tasks import TaskReason
from dispatch.care_plans import CarePlanHooks, register_care_plans
from dispatch.components import Component
from dispatch.deadlines import DeadlineHandlers
from dispatch.follow_up import FollowUpHooks
from dispatch.order_desk import OrderDesk
from dispatch.repairs import ReassuranceHooks, Repairs
from dispatch.runtime import Runtime
from telephony.originate import Originator


def wire_service_calls(
    runtime: Runtime,
    handlers: DeadlineHandlers,
    order_desk: OrderDesk,
    alert_desk: AlertDesk,
    originator: Originator,
) -> list[Component]:
    steps = CallTaskSteps(runtime, originator)
    steps.add(TaskReason.ORDER_FOLLOW_UP, FollowUpHooks(order_desk))
    steps.add(TaskReason.CARE_PLAN, CarePlanHooks(alert_desk))
    steps.add(TaskReason.REPAIR_REASSURANCE, ReassuranceHooks())
    steps.add(TaskReason.ALERT_FOLLOW_UP, AlertFollowUpHooks())
    steps.register(handlers)
    register_care_plans(handlers, runtime)
    Repairs(order_desk).register(handlers)
    return [
        BusWatch(runtime, [("call-tasks", steps.on_attempt_event, "call_attempt.")]),
        # calls from a resident's own phone check visits in and out (dispatch/call_evidence.py)
        CallEvidence(order_desk),
    ]
