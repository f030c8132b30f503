#!/bin/sh
# eventcmd of Asterisk's AlarmReceiver (alarmreceiver.conf): post every waiting event
# file to Careline, signed, and delete it only when Careline has committed it (HTTP 2xx).
# A file that could not be delivered stays and goes with the next call's run, or with
# a cron entry running this script every minute. Careline stores a re-sent file once.
#
# Configuration, from /etc/careline/alarm-intake.env (mode 0600, owned by asterisk):
#   CARELINE_URL=https://careline.example.org     where Careline listens
#   CARELINE_KEY=ck_...                           from `careline integration add asterisk-1`
#   CARELINE_SECRET=cs_...                        shown once by the same command
# Needs: sh, curl, openssl, flock.
set -u
ENV_FILE=${CARELINE_ALARM_ENV:-/etc/careline/alarm-intake.env}
SPOOL=${CARELINE_ALARM_SPOOL:-/var/spool/asterisk/alarm_events}
[ -r "$ENV_FILE" ] && . "$ENV_FILE"
: "${CARELINE_URL:?set CARELINE_URL in $ENV_FILE}"
: "${CARELINE_KEY:?set CARELINE_KEY in $ENV_FILE}"
: "${CARELINE_SECRET:?set CARELINE_SECRET in $ENV_FILE}"

exec 9>"$SPOOL/.careline.lock"
flock -n 9 || exit 0  # another run is already posting

status=0
for file in "$SPOOL"/event-*; do
    [ -f "$file" ] || continue
    ts=$(date +%s)
    # Signature: hex HMAC-SHA256(secret, "<timestamp>.<raw body>"), body sent byte for byte.
    sig=$( { printf '%s.' "$ts"; cat "$file"; } | openssl dgst -sha256 -hmac "$CARELINE_SECRET" -r | cut -d' ' -f1)
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 15 \
        -H "Content-Type: text/plain" \
        -H "X-Careline-Key: $CARELINE_KEY" \
        -H "X-Careline-Timestamp: $ts" \
        -H "X-Careline-Signature: $sig" \
        --data-binary "@$file" "$CARELINE_URL/api/v1/alarms/contact-id")
    case "$code" in
        200|202) rm -f "$file" ;;
        400) mv "$file" "$file.rejected"; logger -t careline-alarm "rejected $(basename "$file") (400)"; status=1 ;;
        *) logger -t careline-alarm "kept $(basename "$file") for retry (HTTP $code)"; status=1 ;;
    esac
done
exit $status
