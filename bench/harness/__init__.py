"""Benchmark harness: runs the same workloads against Apache Kafka and Tidelog.

Modules, lowest first: ``procstat`` (CPU/RSS of a process tree), ``machine`` (what the host is),
``java`` (Kafka's jars and JVM command lines), ``systems`` (start/stop a broker behind one
interface), ``generators`` (load generators that are not ours: kafka-tools and librdkafka via
``rdkgen``), ``workloads`` (the matrix and the profiles), ``runner`` (A/B rounds, repeats),
``report`` (median/min/max, ratios, markdown and JSON). ``bench/run.py`` is the command line.
"""
