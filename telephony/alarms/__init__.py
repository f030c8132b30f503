"""Alarm intake: Contact ID (through Asterisk), SIA DC-09 over IP, and device-cloud JSON.

Parsers are pure (`contact_id`, `dc09`); `intake` turns a parsed message into one
committed `alarms` row and whatever it means (an alert, a note, a notice, a heartbeat);
`dc09_server` and `http_api` are the thin adapters that answer the sender after the commit.
"""
