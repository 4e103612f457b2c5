/* latgen: end-to-end latency at a fixed rate, in C on librdkafka, for rates the Python generator
 * cannot drive from one core (half of Kafka's peak is ~280 k records/s here).
 *
 *   latgen BOOTSTRAP TOPIC COUNT RATE SIZE WARMUP LINGER_MS BATCH_BYTES ACKS
 *
 * A consumer thread reads partition 0 from its end; the producer thread sends COUNT records of SIZE
 * bytes at RATE per second, each carrying its *intended* send time (CLOCK_MONOTONIC ns) in its first
 * 8 bytes, so a stalled producer cannot hide latency (no coordinated omission). Latency = receive
 * time - intended send time. The first WARMUP records are not measured. Prints one JSON object with
 * the same keys as bench/harness/rdkgen.py's e2e mode. */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t) {
    struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "latgen: %s: %s\n", what, err);
    exit(2);
}

/* a setting newer librdkafka versions have and older ones (Debian 12's 2.0.2) lack */
static void set_if_known(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    rd_kafka_conf_set(conf, key, value, err, sizeof err);
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK) die(key, err);
}

struct args {
    const char *bootstrap, *topic;
    long count, warmup, size, batch;
    double rate;
    const char *linger, *acks;
};

static volatile int consumer_ready = 0;
static long received = 0, produce_errors = 0;
static int64_t *lat;

static void *consume(void *p) {
    struct args *a = p;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", a->bootstrap);
    set(conf, "group.id", "latgen");
    set(conf, "enable.auto.commit", "false");
    set(conf, "fetch.wait.max.ms", "100");
    set_if_known(conf, "fetch.queue.backoff.ms", "1");
    set(conf, "socket.nagle.disable", "true");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) die("consumer", err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, a->topic, 0)->offset = RD_KAFKA_OFFSET_END;
    if (rd_kafka_assign(rk, parts)) die("assign", "failed");
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t idle = now_ns() + 30000000000LL;
    /* poll once so the fetcher is connected and positioned before the producer starts */
    rd_kafka_message_t *first = rd_kafka_consumer_poll(rk, 500);
    if (first) rd_kafka_message_destroy(first);
    consumer_ready = 1;
    while (received < a->count && now_ns() < idle) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        int64_t t = now_ns();
        if (!m->err && m->len >= 8) {
            int64_t sent;
            memcpy(&sent, m->payload, 8);
            lat[received++] = t - sent;
            idle = t + 30000000000LL;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) produce_errors++;
}

static int cmp(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static double pct(const int64_t *v, long n, double q) {
    if (n == 0) return -1;
    long k = (long)(q * n + 0.5) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k] / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: latgen BOOTSTRAP TOPIC COUNT RATE SIZE WARMUP LINGER_MS BATCH_BYTES ACKS\n");
        return 2;
    }
    struct args a = {argv[1], argv[2], atol(argv[3]), atol(argv[6]), atol(argv[5]), atol(argv[8]),
                     atof(argv[4]), argv[7], argv[9]};
    if (a.size < 8 || a.count < 1 || a.rate <= 0) die("arguments", "size >= 8, count >= 1, rate > 0");
    lat = calloc((size_t)a.count, sizeof *lat);
    char err[512], batch[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", a.bootstrap);
    set(conf, "linger.ms", a.linger);
    snprintf(batch, sizeof batch, "%ld", a.batch);
    set(conf, "batch.size", batch);
    set(conf, "acks", a.acks);
    set(conf, "socket.nagle.disable", "true");
    set(conf, "queue.buffering.max.messages", "2000000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) die("producer", err);
    pthread_t consumer;
    pthread_create(&consumer, NULL, consume, &a);
    while (!consumer_ready) sleep_until(now_ns() + 1000000);
    char *buf = calloc(1, (size_t)a.size);
    memset(buf + 8, 'x', (size_t)a.size - 8);
    double interval = 1e9 / a.rate;
    int64_t t0 = now_ns() + 50000000;
    long i = 0;
    while (i < a.count) {
        int64_t t = now_ns();
        long due = t < t0 ? 0 : (long)((t - t0) / interval) + 1;
        if (due > a.count) due = a.count;
        while (i < due) {
            int64_t intended = t0 + (int64_t)(i * interval);
            memcpy(buf, &intended, 8);
            if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(a.topic), RD_KAFKA_V_PARTITION(0),
                                  RD_KAFKA_V_VALUE(buf, (size_t)a.size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 1);
                continue;
            }
            i++;
        }
        rd_kafka_poll(rk, 0);
        if (i < a.count) sleep_until(t0 + (int64_t)(i * interval));
    }
    int64_t sent_all = now_ns();
    int left = rd_kafka_flush(rk, 60000) ? rd_kafka_outq_len(rk) : 0;
    pthread_join(consumer, NULL);
    rd_kafka_destroy(rk);
    long skip = a.warmup < received ? a.warmup : received;
    long n = received - skip;
    qsort(lat + skip, (size_t)n, sizeof *lat, cmp);
    double sum = 0;
    for (long k = skip; k < received; k++) sum += (double)lat[k];
    printf("{\"records\": %ld, \"warmup_records\": %ld, \"errors\": %ld, \"produce_errors\": %ld, "
           "\"seconds\": %.3f, \"rate\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f, "
           "\"max_ms\": %.4f, \"mean_ms\": %.4f}\n",
           n, skip, a.count - received, produce_errors + left, (sent_all - t0) / 1e9, a.rate,
           pct(lat + skip, n, 0.50), pct(lat + skip, n, 0.99), pct(lat + skip, n, 0.999),
           n ? lat[skip + n - 1] / 1e6 : -1.0, n ? sum / n / 1e6 : -1.0);
    return 0;
}
