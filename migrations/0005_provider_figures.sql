-- Provider figures (providers/provider_figures.py): the median response time
-- looks up the first inbound SMS about each of a page of providers' offers.
-- Without this index every provider list would read all messages ever stored.
CREATE INDEX sms_messages_job_reply_idx ON sms_messages (job_id, created_at)
    WHERE direction = 'in' AND job_id IS NOT NULL;
