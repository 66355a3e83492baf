#include "kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct bh_kafka_producer {
	rd_kafka_t *rk;
	atomic_int failed; /* asynchronous messages that failed since the last flush */
};

/* What a synchronous producer waits on; set by the delivery report. */
struct produce_wait {
	atomic_int done;
	rd_kafka_resp_err_t err;
};

static void delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	(void)rk;
	struct bh_kafka_producer *p = opaque;
	struct produce_wait *w = msg->_private;
	if (w) {
		w->err = msg->err;
		atomic_store(&w->done, 1);
	} else if (msg->err) {
		atomic_fetch_add(&p->failed, 1);
		bh_warn("kafka: message to %s failed: %s", rd_kafka_topic_name(msg->rkt),
			rd_kafka_err2str(msg->err));
	}
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3)
		bh_error("kafka %s: %s", fac, buf);
	else if (level <= 5)
		bh_warn("kafka %s: %s", fac, buf);
	else
		bh_debug("kafka %s: %s", fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
		    size_t errlen)
{
	return rd_kafka_conf_set(conf, key, value, errbuf, errlen) == RD_KAFKA_CONF_OK ? 0 : -1;
}

struct bh_kafka_producer *bh_kafka_producer_new(const struct bh_config *cfg, int timeout_ms,
						char *errbuf, size_t errlen)
{
	char timeout[16];
	snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
	struct bh_kafka_producer *p = bh_xcalloc(1, sizeof(*p));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errbuf, errlen) < 0 ||
	    conf_set(conf, "acks", "all", errbuf, errlen) < 0 ||
	    conf_set(conf, "enable.idempotence", "true", errbuf, errlen) < 0 ||
	    conf_set(conf, "linger.ms", "2", errbuf, errlen) < 0 ||
	    conf_set(conf, "message.timeout.ms", timeout, errbuf, errlen) < 0) {
		rd_kafka_conf_destroy(conf);
		free(p);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_opaque(conf, p);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
	if (p->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		free(p);
		return NULL;
	}
	/* conf is now owned by rk */
	return p;
}

static rd_kafka_resp_err_t produce_one(struct bh_kafka_producer *p, const char *topic,
				       const char *key, const void *payload, size_t len,
				       struct produce_wait *w)
{
	rd_kafka_resp_err_t err = rd_kafka_producev(
		p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)payload, len),
		RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		/* Serve delivery reports to make room, then try once more. */
		rd_kafka_poll(p->rk, 100);
		err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
					RD_KAFKA_V_VALUE((void *)payload, len),
					RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
	}
	if (err)
		bh_warn("kafka: produce to %s: %s", topic, rd_kafka_err2str(err));
	return err;
}

static int produce(struct bh_kafka_producer *p, const char *topic, const char *key,
		   const void *payload, size_t len, struct produce_wait *w)
{
	return produce_one(p, topic, key, payload, len, w) ? -1 : 0;
}

int bh_kafka_produce_sync(struct bh_kafka_producer *p, const char *topic, const char *key,
			  const void *payload, size_t len, char *errbuf, size_t errlen)
{
	struct produce_wait w = {0};
	if (produce(p, topic, key, payload, len, &w) < 0) {
		snprintf(errbuf, errlen, "kafka: cannot queue message for %s", topic);
		return -1;
	}
	/*
	 * Any thread polling serves any thread's report, so each waiter polls
	 * until its own flag is set. The report always arrives, at the latest
	 * when message.timeout.ms expires, so `w` is never left dangling.
	 */
	while (!atomic_load(&w.done))
		rd_kafka_poll(p->rk, 20);
	if (w.err) {
		snprintf(errbuf, errlen, "kafka: %s", rd_kafka_err2str(w.err));
		return -1;
	}
	return 0;
}

int bh_kafka_produce_batch(struct bh_kafka_producer *p, const char *topic,
			   struct bh_kafka_msg *msgs, size_t n)
{
	struct produce_wait *w = bh_xcalloc(n > 0 ? n : 1, sizeof(*w));
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		msgs[i].err =
			produce_one(p, topic, msgs[i].key, msgs[i].payload, msgs[i].len, &w[i]);
		if (msgs[i].err)
			atomic_store(&w[i].done, 1); /* never queued: no report will come */
	}
	/*
	 * As in bh_kafka_produce_sync: every report arrives, at the latest
	 * when message.timeout.ms expires, so w outlives every report that
	 * points into it.
	 */
	for (size_t i = 0; i < n; i++)
		while (!atomic_load(&w[i].done))
			rd_kafka_poll(p->rk, 20);
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].err)
			msgs[i].err = w[i].err;
		failed += msgs[i].err != RD_KAFKA_RESP_ERR_NO_ERROR;
	}
	free(w);
	return failed;
}

int bh_kafka_produce(struct bh_kafka_producer *p, const char *topic, const char *key,
		     const void *payload, size_t len)
{
	return produce(p, topic, key, payload, len, NULL);
}

int bh_kafka_flush(struct bh_kafka_producer *p, int timeout_ms)
{
	if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return atomic_exchange(&p->failed, 0);
}

void bh_kafka_poll(struct bh_kafka_producer *p)
{
	rd_kafka_poll(p->rk, 0);
}

bool bh_kafka_ping(struct bh_kafka_producer *p, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	if (rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	bool ok = md->broker_cnt > 0;
	rd_kafka_metadata_destroy(md);
	return ok;
}

void bh_kafka_producer_free(struct bh_kafka_producer *p)
{
	if (p == NULL)
		return;
	rd_kafka_flush(p->rk, 5000);
	rd_kafka_destroy(p->rk);
	free(p);
}

rd_kafka_t *bh_kafka_consumer_new(const struct bh_config *cfg, const char *const *topics,
				  int ntopics, char *errbuf, size_t errlen)
{
	return bh_kafka_consumer_new_group(cfg, cfg->kafka_group, topics, ntopics, errbuf, errlen);
}

rd_kafka_t *bh_kafka_consumer_new_group(const struct bh_config *cfg, const char *group,
					const char *const *topics, int ntopics, char *errbuf,
					size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errbuf, errlen) < 0 ||
	    conf_set(conf, "group.id", group, errbuf, errlen) < 0 ||
	    conf_set(conf, "enable.auto.commit", "true", errbuf, errlen) < 0 ||
	    /* Commit only what we stored after the database commit. */
	    conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen) < 0 ||
	    conf_set(conf, "auto.commit.interval.ms", "500", errbuf, errlen) < 0 ||
	    conf_set(conf, "auto.offset.reset", "earliest", errbuf, errlen) < 0 ||
	    conf_set(conf, "session.timeout.ms", "10000", errbuf, errlen) < 0 ||
	    conf_set(conf, "heartbeat.interval.ms", "1000", errbuf, errlen) < 0 ||
	    /*
	     * Eager round robin: with librdkafka 2.0's cooperative-sticky over
	     * two topics, a worker joining an idle one was given no partition.
	     */
	    conf_set(conf, "partition.assignment.strategy", "roundrobin", errbuf, errlen) < 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errlen);
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	/* conf is now owned by rk */
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(ntopics);
	for (int i = 0; i < ntopics; i++)
		rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err) {
		snprintf(errbuf, errlen, "kafka: subscribe: %s", rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

int bh_kafka_consumer_store(rd_kafka_t *rk, const rd_kafka_message_t *msg)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(msg->rkt), msg->partition)
		->offset = msg->offset + 1;
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	/* A partition revoked meanwhile refuses the store; its next owner redoes it. */
	return err ? -1 : 0;
}

long long bh_kafka_consumer_lag(rd_kafka_t *rk)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	long long lag = 0;
	if (rd_kafka_position(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		for (int i = 0; i < parts->cnt; i++) {
			int64_t lo, hi;
			rd_kafka_topic_partition_t *tp = &parts->elems[i];
			if (rd_kafka_get_watermark_offsets(rk, tp->topic, tp->partition, &lo,
							   &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
			    tp->offset >= 0 && hi > tp->offset)
				lag += hi - tp->offset;
		}
	}
	rd_kafka_topic_partition_list_destroy(parts);
	return lag;
}

/*
 * Grows each of the n topics that has fewer than `want` partitions: more
 * workers can then share it. Keys map to other partitions afterwards, so
 * it is logged; queued messages are still consumed. 0 or -1.
 */
static int grow_partitions(rd_kafka_t *rk, const char *const *names, int n, int want, char *errbuf,
			   size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (err) {
		snprintf(errbuf, errlen, "kafka: metadata: %s", rd_kafka_err2str(err));
		return -1;
	}
	rd_kafka_NewPartitions_t *grow[4];
	int ngrow = 0;
	for (int i = 0; i < n && ngrow < 4; i++)
		for (int t = 0; t < md->topic_cnt; t++) {
			const rd_kafka_metadata_topic_t *mt = &md->topics[t];
			if (strcmp(mt->topic, names[i]) != 0 || mt->err ||
			    mt->partition_cnt >= want)
				continue;
			bh_info("topic %s: growing from %d to %d partitions", mt->topic,
				mt->partition_cnt, want);
			grow[ngrow] =
				rd_kafka_NewPartitions_new(mt->topic, (size_t)want, errbuf, errlen);
			if (grow[ngrow] == NULL) {
				for (int j = 0; j < ngrow; j++)
					rd_kafka_NewPartitions_destroy(grow[j]);
				rd_kafka_metadata_destroy(md);
				return -1;
			}
			ngrow++;
		}
	rd_kafka_metadata_destroy(md);
	if (ngrow == 0)
		return 0;
	int rc = -1;
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreatePartitions(rk, grow, (size_t)ngrow, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	const rd_kafka_CreatePartitions_result_t *res =
		ev ? rd_kafka_event_CreatePartitions_result(ev) : NULL;
	if (res == NULL) {
		snprintf(errbuf, errlen, "kafka: grow partitions: %s",
			 ev ? rd_kafka_event_error_string(ev) : "timed out");
		goto out;
	}
	size_t nres;
	const rd_kafka_topic_result_t **results =
		rd_kafka_CreatePartitions_result_topics(res, &nres);
	rc = 0;
	for (size_t i = 0; i < nres; i++) {
		rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[i]);
		/* Metadata can lag a grow that just happened: it has them already. */
		if (terr == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS) {
			bh_info("topic %s: %s", rd_kafka_topic_result_name(results[i]),
				rd_kafka_topic_result_error_string(results[i]));
			continue;
		}
		if (terr) {
			snprintf(errbuf, errlen, "kafka: grow partitions of %s: %s",
				 rd_kafka_topic_result_name(results[i]),
				 rd_kafka_topic_result_error_string(results[i]));
			rc = -1;
		}
	}
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	for (int j = 0; j < ngrow; j++)
		rd_kafka_NewPartitions_destroy(grow[j]);
	return rc;
}

int bh_kafka_create_topics(const struct bh_config *cfg, char *errbuf, size_t errlen)
{
	const char *names[] = {cfg->topic_events, cfg->topic_deliveries, cfg->topic_refresh,
			       cfg->topic_dlq};
	int rc = -1;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errbuf, errlen) < 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_NewTopic_t *topics[4];
	for (int i = 0; i < 4; i++) {
		topics[i] = rd_kafka_NewTopic_new(names[i], cfg->kafka_partitions, 1, errbuf,
						  (size_t)errlen);
		if (topics[i] == NULL) {
			for (int j = 0; j < i; j++)
				rd_kafka_NewTopic_destroy(topics[j]);
			rd_kafka_destroy(rk);
			return -1;
		}
	}
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, topics, 4, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	const rd_kafka_CreateTopics_result_t *res =
		ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
	if (res == NULL) {
		snprintf(errbuf, errlen, "kafka: create topics: %s",
			 ev ? rd_kafka_event_error_string(ev) : "timed out");
		goto out;
	}
	size_t n;
	const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(res, &n);
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
		if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
			snprintf(errbuf, errlen, "kafka: create topic %s: %s",
				 rd_kafka_topic_result_name(results[i]),
				 rd_kafka_topic_result_error_string(results[i]));
			rc = -1;
		}
	}
	/* Existing topics keep their count unless asked for more. */
	if (rc == 0)
		rc = grow_partitions(rk, names, 4, cfg->kafka_partitions, errbuf, errlen);
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	for (int i = 0; i < 4; i++)
		rd_kafka_NewTopic_destroy(topics[i]);
	rd_kafka_destroy(rk);
	return rc;
}
