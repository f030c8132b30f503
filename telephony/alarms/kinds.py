"""What an alarm is, whatever protocol brought it, and what each kind leads to."""

from __future__ import annotations

from enum import StrEnum

from dispatch.alerts import AlertKind


class AlarmSource(StrEnum):
    CONTACT_ID = "contact_id"
    DC09 = "dc09"
    HTTP = "http"


class AlarmKind(StrEnum):
    SOS = "sos"  # panic, personal emergency, duress
    MEDICAL = "medical"
    FALL = "fall"
    FIRE = "fire"  # fire, smoke, heat
    GAS = "gas"  # gas, carbon monoxide
    WATER = "water"
    INACTIVITY = "inactivity"  # no movement / failed to report in
    TAMPER = "tamper"
    OTHER = "other"  # an alarm condition of no kind above (intrusion, temperature, ...)
    LOW_BATTERY = "low_battery"
    MAINS_LOSS = "mains_loss"
    TROUBLE = "trouble"  # any other technical fault
    TEST = "test"  # periodic or manual test report
    HEARTBEAT = "heartbeat"  # link supervision (DC-09 NULL, a cloud's keep-alive)
    CANCEL = "cancel"  # the resident (or a user) cancelled at the device
    STATUS = "status"  # arming, openings, log notes: recorded, nothing to do


class Qualifier(StrEnum):
    NEW = "new"
    RESTORE = "restore"
    STATUS = "status"  # a condition reported before and still present


# Emergencies raise (or join) an alert. Tamper is one too: a unit pulled off the wall
# of someone living alone is a reason to call, not a maintenance job.
ALERT_KINDS: dict[AlarmKind, AlertKind] = {
    AlarmKind.SOS: AlertKind.SOS,
    AlarmKind.MEDICAL: AlertKind.MEDICAL,
    AlarmKind.FALL: AlertKind.FALL,
    AlarmKind.FIRE: AlertKind.FIRE,
    AlarmKind.GAS: AlertKind.GAS,
    AlarmKind.WATER: AlertKind.WATER,
    AlarmKind.INACTIVITY: AlertKind.INACTIVITY,
    AlarmKind.TAMPER: AlertKind.TAMPER,
    AlarmKind.OTHER: AlertKind.OTHER,
}
# Technical faults update the device and raise a maintenance notice, never an emergency.
MAINTENANCE_KINDS = frozenset({AlarmKind.LOW_BATTERY, AlarmKind.MAINS_LOSS, AlarmKind.TROUBLE})
# Proof of life only: the device is seen, nothing else happens.
LIFE_SIGNS = frozenset({AlarmKind.TEST, AlarmKind.HEARTBEAT, AlarmKind.STATUS})


class Outcome(StrEnum):
    """What an alarm did, as stored on its row and answered to HTTP senders."""

    ALERT_RAISED = "alert_raised"
    ALERT_JOINED = "alert_joined"
    ATTACHED_TO_CLOSED = "attached_to_closed"  # shortly after the alert was closed: note + call-back
    RESTORE_NOTED = "restore_noted"
    CANCEL_NOTED = "cancel_noted"
    MAINTENANCE = "maintenance"  # device updated, a notice raised (or one is already open)
    DEVICE_UPDATED = "device_updated"  # a restore of a technical fault, or a condition already known
    LIFE_SIGN = "life_sign"
    NOTHING_OPEN = "nothing_open"  # a restore or cancel with no alert to attach it to
    PENDING = "pending"  # stored and answered; the handler is about to give it one of the above


# What each kind is called on the floor and in texts: (zh-CN, English).
KIND_NAMES: dict[str, tuple[str, str]] = {
    "sos": ("紧急呼叫", "SOS"),
    "medical": ("医疗求助", "medical"),
    "fall": ("跌倒", "fall"),
    "fire": ("火警", "fire"),
    "gas": ("燃气报警", "gas"),
    "water": ("水浸报警", "water"),
    "inactivity": ("长时间无活动", "inactivity"),
    "tamper": ("防拆报警", "tamper"),
    "low_battery": ("电量低", "low battery"),
    "mains_loss": ("断电", "mains loss"),
    "trouble": ("设备故障", "trouble"),
    "test": ("测试", "test"),
    "heartbeat": ("心跳", "heartbeat"),
    "cancel": ("取消", "cancel"),
    "status": ("状态", "status"),
    "other": ("其他报警", "other"),
}
