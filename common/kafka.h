/*
 * Kafka over librdkafka: a producer that can wait for the broker's
 * acknowledgement, a consumer-group consumer whose offsets are stored only
 * once what they carried is durable, and topic creation.
 */
#ifndef BH_COMMON_KAFKA_H
#define BH_COMMON_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"
#include "util.h"

struct bh_kafka_producer;

/*
 * A producer whose messages fail when not acknowledged (acks=all) within
 * timeout_ms. NULL with the reason in errbuf.
 */
struct bh_kafka_producer *bh_kafka_producer_new(const struct bh_config *cfg, int timeout_ms,
						char *errbuf, size_t errlen);
/*
 * Produces one message and waits until the broker acknowledged it or the
 * producer's timeout passed. Safe from several threads at once. 0 or -1.
 */
int bh_kafka_produce_sync(struct bh_kafka_producer *p, const char *topic, const char *key,
			  const void *payload, size_t len, char *errbuf,
			  size_t errlen) BH_MUSTCHECK;
/* One message of a bh_kafka_produce_batch(); err is filled by it. */
struct bh_kafka_msg {
	const char *key;     /* borrowed; NULL: none */
	const void *payload; /* borrowed */
	size_t len;
	rd_kafka_resp_err_t err; /* out: RD_KAFKA_RESP_ERR_NO_ERROR once acknowledged */
};
/*
 * Queues every message of msgs to topic, then waits once until the broker
 * acknowledged or refused each (at the latest the producer's timeout):
 * one produce batch, one wait, however many messages. Each message's own
 * outcome is in its err (a message that could not even be queued has
 * RD_KAFKA_RESP_ERR__QUEUE_FULL or the reason librdkafka gave). Safe from
 * several threads at once. Returns how many failed.
 */
int bh_kafka_produce_batch(struct bh_kafka_producer *p, const char *topic,
			   struct bh_kafka_msg *msgs, size_t n);
/* Queues one message; the caller calls bh_kafka_flush() before relying on it. */
int bh_kafka_produce(struct bh_kafka_producer *p, const char *topic, const char *key,
		     const void *payload, size_t len) BH_MUSTCHECK;
/* Waits for every queued message; returns how many failed (or -1 on timeout). */
int bh_kafka_flush(struct bh_kafka_producer *p, int timeout_ms);
/* Serves delivery reports; call now and then when producing asynchronously. */
void bh_kafka_poll(struct bh_kafka_producer *p);
/* True when the cluster answers a metadata request within timeout_ms. */
bool bh_kafka_ping(struct bh_kafka_producer *p, int timeout_ms);
void bh_kafka_producer_free(struct bh_kafka_producer *p);

/*
 * A consumer in group `group` subscribed to `topics`. Offsets are committed
 * automatically, but only offsets the caller stored with
 * bh_kafka_consumer_store() — after its work is durable.
 */
rd_kafka_t *bh_kafka_consumer_new(const struct bh_config *cfg, const char *const *topics,
				  int ntopics, char *errbuf, size_t errlen);
/* The same in another consumer group (the scheduler reads bankhook.refresh in its own). */
rd_kafka_t *bh_kafka_consumer_new_group(const struct bh_config *cfg, const char *group,
					const char *const *topics, int ntopics, char *errbuf,
					size_t errlen);
int bh_kafka_consumer_store(rd_kafka_t *rk, const rd_kafka_message_t *msg);
/* Total lag (high watermark - position) over assigned partitions, or -1. */
long long bh_kafka_consumer_lag(rd_kafka_t *rk);

/*
 * Creates the topics named in the configuration if missing, and grows any
 * with fewer than kafka.partitions partitions to that many (partitions
 * never shrink). 0 or -1.
 */
int bh_kafka_create_topics(const struct bh_config *cfg, char *errbuf, size_t errlen) BH_MUSTCHECK;

#endif
