"""The typed models of the ``Cluster`` and ``Topic`` resources (``tidelog.dev/v1alpha1``): spec and
status as dataclasses whose fields carry their OpenAPI validation.

Job: the one source of the CRDs (``crd.py`` / ``crdgen.py`` write ``crds/`` from these) and the types
the handlers work with (``schema.load(ClusterSpec, body["spec"])``, ``schema.dump(status)``).
Field names are snake_case here and camelCase in the resources. Every status field the operator
writes is declared, because a structural schema prunes undeclared ones (kopf #321).

Rules that need the old object (partitions only grow, names cannot change) are CEL transition rules;
the handlers still report them in status if one gets through (e.g. a CRD installed without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tidelog.operator.schema import DNS_LABEL_PATTERN, QUANTITY_PATTERN, Rule, field

GROUP = "tidelog.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_VERSION = "0.1.0"
DEFAULT_IMAGE_REPOSITORY = "tidelog/broker"

# Broker properties the operator sets itself (per pod or per cluster); a Cluster may not set them.
MANAGED_BROKER_KEYS = (
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "metadata.store",
    "admin.listener",
    "broker.rack",
    "metrics.port",
    "metrics.host",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "ssl.keystore.location",
    "ssl.truststore.location",
    "authorizer.class.name",
    "super.users",
)
CONFIG_KEY_PATTERN = "^[a-z0-9][a-z0-9._-]*$"
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"  # Kafka's legal characters (at most 249 of them)
SEMVER_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"

IntOrString = int | str


def _config_rules(managed: tuple[str, ...]) -> tuple[Rule, ...]:
    rules = [Rule(f"self.all(k, k.matches('{CONFIG_KEY_PATTERN}'))", "config keys are Kafka property names")]
    if managed:
        listed = ", ".join(f"'{k}'" for k in managed)
        rules.append(
            Rule(
                f"self.all(k, !(k in [{listed}]))",
                f"these broker properties are set by the operator: {', '.join(managed)}",
                reason="FieldValueForbidden",
            )
        )
    return tuple(rules)


# ----- shared -----


@dataclass(kw_only=True)
class Condition:
    """The state of one aspect of the resource (metav1.Condition's shape)."""

    type: str = field("Ready, Reconciling, Degraded, Warning, ...", pattern="^[A-Z][A-Za-z0-9]*$", max_length=316)
    status: Literal["True", "False", "Unknown"] = field("True, False or Unknown", emit_default=False)
    reason: str = field(
        "Why, in CamelCase (a program can test it)",
        default="",
        pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
        max_length=1024,
        emit_default=False,
    )
    message: str = field("What a person should know or do", default="", max_length=32768, emit_default=False)
    last_transition_time: str | None = field("When status last changed (RFC 3339)", default=None, format="date-time")
    observed_generation: int | None = field("The resource's generation this was set for", default=None, minimum=0)


# ----- Cluster -----


@dataclass(kw_only=True)
class Storage:
    """Each broker's persistent volume (a volumeClaimTemplate)."""

    size: str = field(
        "Volume size (a Kubernetes quantity); may grow, never shrink",
        default="10Gi",
        pattern=QUANTITY_PATTERN,
        rules=(Rule("quantity(self).compareTo(quantity(oldSelf)) >= 0", "storage.size may grow but not shrink"),),
    )
    storage_class_name: str | None = field(
        "StorageClass of the volumes (the cluster's default when unset); cannot change",
        default=None,
        rules=(Rule("self == oldSelf", "storage.storageClassName cannot change"),),
    )
    delete_claim: bool = field(
        "Delete a broker's volume when the broker is removed (scale-down) or the Cluster deleted", default=False
    )


@dataclass(kw_only=True)
class Resources:
    """CPU and memory of each broker container (corev1.ResourceRequirements' requests and limits)."""

    requests: dict[str, IntOrString] = field("Requested resources, e.g. cpu: 500m, memory: 1Gi", default_factory=dict)
    limits: dict[str, IntOrString] = field("Resource limits", default_factory=dict)


Authentication = Literal["none", "scram-sha-512", "tls"]
_AUTH_HELP = (
    "How clients prove who they are: none, scram-sha-512 (SASL SCRAM; users made with Kafka's "
    "AlterUserScramCredentials) or tls (a client certificate signed by the cluster CA; needs tls: true)"
)
# has(): the API server also checks a rule against the field's default ({}), before nested defaults.
_TLS_AUTH_RULE = Rule(
    "!has(self.authentication) || self.authentication != 'tls' || (has(self.tls) && self.tls)",
    "authentication: tls needs tls: true (the client certificate is checked in the TLS handshake)",
    reason="FieldValueInvalid",
)


@dataclass(kw_only=True)
class InternalListener:
    """The in-cluster listener (port 9092, the bootstrap Service). tls: false + authentication: none
    is PLAINTEXT (the default); tls: true is SSL, with authentication: tls mutual TLS
    (ssl.client.auth=required); scram-sha-512 is SASL_SSL with tls, SASL_PLAINTEXT without."""

    __rules__ = (_TLS_AUTH_RULE,)

    tls: bool = field("Encrypt with TLS (broker certificates from the cluster CA or cert-manager)", default=False)
    authentication: Authentication = field(_AUTH_HELP, default="none")


@dataclass(kw_only=True)
class ExternalListener:
    """Clients outside Kubernetes: one Service per broker plus a bootstrap Service, on the brokers'
    EXTERNAL listener (port 9094). Each broker advertises its own Service: NodePort, the address of
    the node its pod runs on (status.hostIP) and its node port; LoadBalancer, its load balancer's
    address (a broker waits for it before it starts). tls/authentication as for the internal
    listener; with tls, the broker certificates also name the external addresses."""

    __rules__ = (_TLS_AUTH_RULE,)

    type: Literal["NodePort", "LoadBalancer"] = field("Service type of the per-broker Services")
    node_port_base: int | None = field(
        "NodePort only: broker N gets node port base+N, the bootstrap base-1 (allocated by Kubernetes when unset)",
        default=None,
        minimum=30001,
        maximum=32767,
    )
    annotations: dict[str, str] = field("Annotations of the external Services", default_factory=dict)
    tls: bool = field("Encrypt with TLS", default=False)
    authentication: Authentication = field(_AUTH_HELP, default="none")
    alternative_names: list[str] = field(
        "Extra DNS names or IP addresses for the broker certificates (e.g. a DNS name in front of the "
        "node ports); the load balancers' and nodes' addresses are added by the operator",
        default_factory=list,
        max_items=64,
    )


@dataclass(kw_only=True)
class Listeners:
    """How clients reach the brokers. In-cluster clients use the bootstrap Service on port 9092."""

    internal: InternalListener = field("The in-cluster listener (port 9092)", default_factory=InternalListener)
    external: ExternalListener | None = field("An external listener (off when unset)", default=None)


@dataclass(kw_only=True)
class IssuerRef:
    """A cert-manager issuer (cert-manager.io/v1) that signs the broker certificates instead of the
    operator's own cluster CA; used when cert-manager's Certificate CRD is installed."""

    name: str = field("The Issuer's or ClusterIssuer's name", pattern=DNS_LABEL_PATTERN, max_length=253)
    kind: Literal["Issuer", "ClusterIssuer"] = field("Issuer (in the Cluster's namespace) or ClusterIssuer",
                                                     default="Issuer")  # fmt: skip
    group: str = field("The issuer's API group", default="cert-manager.io", max_length=253)


@dataclass(kw_only=True)
class Certificates:
    """The cluster CA and the broker certificates (used when a listener has tls: true). The operator
    keeps its own CA in the Secret <cluster>-cluster-ca and publishes its certificate in
    <cluster>-cluster-ca-cert (ca.crt) for clients; it renews both before they expire, rolling the
    brokers one at a time. Annotate the Cluster tidelog.dev/renew-certificates=<any new value> (or
    tidelog.dev/renew-ca) to renew now."""

    __rules__ = (
        Rule(
            "!has(self.renewBeforeDays) || !has(self.validityDays) || self.renewBeforeDays < self.validityDays",
            "renewBeforeDays must be below validityDays",
        ),
        Rule(
            "!has(self.validityDays) || !has(self.caValidityDays) || self.validityDays <= self.caValidityDays",
            "validityDays may not exceed caValidityDays",
        ),
    )

    ca_validity_days: int = field("Lifetime of the cluster CA certificate, days", default=1825, minimum=2,
                                  maximum=36500)  # fmt: skip
    validity_days: int = field("Lifetime of a broker certificate, days", default=365, minimum=2, maximum=36500)
    renew_before_days: int = field(
        "Renew a certificate (broker or CA) when fewer than this many days are left", default=30, minimum=1,
        maximum=36499,
    )  # fmt: skip
    issuer: IssuerRef | None = field("Sign with this cert-manager issuer instead of the cluster CA", default=None)


@dataclass(kw_only=True)
class Rack:
    """Rack awareness: each broker's broker.rack is its pod's topology label."""

    topology_key: Literal["topology.kubernetes.io/zone", "topology.kubernetes.io/region"] = field(
        "The node label whose value is the rack", default="topology.kubernetes.io/zone"
    )


@dataclass(kw_only=True)
class TopologySpread:
    """A topologySpreadConstraint over the Cluster's broker pods."""

    topology_key: str = field("Node label to spread over, e.g. topology.kubernetes.io/zone", min_length=1)
    max_skew: int = field("Largest allowed difference in broker count between domains", default=1, minimum=1)
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = field(
        "What to do when the spread cannot be kept", default="ScheduleAnyway"
    )


@dataclass(kw_only=True)
class Metrics:
    """Prometheus metrics of the brokers (served on every broker, and by the metrics Service)."""

    enabled: bool = field("Create the metrics Service", default=True)
    port: int = field("metrics.port of the brokers", default=9404, minimum=1024, maximum=65535)


@dataclass(kw_only=True)
class Toleration:
    """A pod toleration (corev1.Toleration)."""

    key: str | None = field("Taint key", default=None)
    operator: Literal["Exists", "Equal"] = field("Exists or Equal", default="Equal")
    value: str | None = field("Taint value", default=None)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field("Taint effect", default=None)
    toleration_seconds: int | None = field("NoExecute: how long to stay", default=None, minimum=0)


@dataclass(kw_only=True)
class PodOptions:
    """Extra settings of the broker pods."""

    annotations: dict[str, str] = field("Pod annotations", default_factory=dict)
    labels: dict[str, str] = field("Pod labels (the operator's own labels win)", default_factory=dict)
    node_selector: dict[str, str] = field("Pod nodeSelector", default_factory=dict)
    tolerations: list[Toleration] = field("Pod tolerations", default_factory=list, max_items=64)
    priority_class_name: str | None = field("Pod priorityClassName", default=None)


@dataclass(kw_only=True)
class ClusterAuthorization:
    """Kafka's ACLs on the brokers (its StandardAuthorizer's rules; nothing is allowed without a
    binding). Users get their bindings from User resources (or kafka-acls). The brokers then
    replicate over their mutual-TLS REPLICATION listener, and their certificate's principal
    (User:CN=<cluster>-broker,O=tidelog.dev) is a super user."""

    type: Literal["simple"] = field("simple: Kafka's ACLs", default="simple")
    super_users: list[str] = field(
        "More principals that may do anything (User:<name>, or a certificate subject User:CN=...)",
        default_factory=list,
        max_items=16,
        rules=(Rule("self.all(p, p.startsWith('User:'))", "super users are principals User:<name>"),),
    )


@dataclass(kw_only=True)
class ClusterSpec:
    """The desired state of a Tidelog cluster."""

    replicas: int = field("Number of brokers (kubectl scale works too)", default=3, minimum=1, maximum=1000)
    version: str = field("Tidelog version; picks the image tag", default=DEFAULT_VERSION, pattern=SEMVER_PATTERN)
    image: str | None = field(f"Broker image; default {DEFAULT_IMAGE_REPOSITORY}:<version>", default=None)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = field(
        "imagePullPolicy of the broker container", default="IfNotPresent"
    )
    storage: Storage = field("Each broker's volume", default_factory=Storage)
    resources: Resources = field("Broker container resources", default_factory=Resources)
    config: dict[str, IntOrString] = field(
        "Broker properties, Kafka's names (server.properties); quote booleans ('true')",
        default_factory=dict,
        max_properties=256,
        rules=_config_rules(MANAGED_BROKER_KEYS),
    )
    listeners: Listeners = field("Listeners for clients", default_factory=Listeners)
    certificates: Certificates = field("Cluster CA and broker certificates", default_factory=Certificates)
    authorization: ClusterAuthorization | None = field(
        "Kafka ACLs (off when unset: every client may do anything)", default=None
    )
    rack: Rack | None = field("Rack awareness (off when unset)", default=None)
    topology_spread: list[TopologySpread] = field(
        "Spread the brokers over these topologies", default_factory=list, max_items=8
    )
    metrics: Metrics = field("Prometheus metrics", default_factory=Metrics)
    pod: PodOptions = field("Extra pod settings", default_factory=PodOptions)


ScalingPhase = Literal["Idle", "AwaitingBrokers", "Rebalancing", "Draining", "Verifying", "Shrinking", "Blocked"]
RollPhase = Literal["Idle", "Rolling", "Blocked"]


@dataclass(kw_only=True)
class BrokerStatus:
    """One broker as the cluster reports it."""

    id: int = field("node.id (the pod's ordinal)", minimum=0)
    address: str = field("Advertised HOST:PORT")
    ready: bool = field("The pod is Ready and the broker alive in the cluster", default=False)
    rack: str | None = field("broker.rack", default=None)
    external_address: str | None = field("External HOST:PORT (external listener)", default=None)


@dataclass(kw_only=True)
class ScalingStatus:
    """A scale-up or scale-down in progress, kept in status so it survives operator restarts."""

    phase: ScalingPhase = field("Where the scaling is", default="Idle")
    from_replicas: int | None = field("Brokers before", default=None, minimum=0)
    to_replicas: int | None = field("Brokers wanted", default=None, minimum=0)
    brokers: list[int] = field("Brokers being added or drained", default_factory=list)
    started_at: str | None = field("When it started (RFC 3339)", default=None, format="date-time")
    message: str | None = field("Progress or why it is blocked", default=None)


@dataclass(kw_only=True)
class RollStatus:
    """A rolling restart in progress (config or version change)."""

    phase: RollPhase = field("Where the roll is", default="Idle")
    target_hash: str | None = field("The pod-template hash being rolled to", default=None)
    pending: list[int] = field("Brokers still to restart", default_factory=list)
    current: int | None = field("The broker restarting now", default=None)
    started_at: str | None = field("When it started (RFC 3339)", default=None, format="date-time")
    message: str | None = field("Progress or why it stopped", default=None)


@dataclass(kw_only=True)
class CertificatesStatus:
    """The certificates the brokers use (when a listener has tls: true)."""

    issuer: str | None = field("ClusterCA (the operator's) or cert-manager:<kind>/<name>", default=None)
    ca_generation: int | None = field("Generation of the cluster CA (grows with each CA renewal)", default=None)
    ca_not_after: str | None = field("When the CA certificate expires (RFC 3339)", default=None, format="date-time")
    cert_generation: int | None = field("Generation of the broker certificates (grows with each renewal)",
                                        default=None)  # fmt: skip
    not_after: str | None = field("When the first broker certificate expires (RFC 3339)", default=None,
                                  format="date-time")  # fmt: skip
    message: str | None = field("A renewal in progress, or what it waits for", default=None)


@dataclass(kw_only=True)
class ClusterStatus:
    """The observed state of a Tidelog cluster, written by the operator."""

    observed_generation: int | None = field("The generation last reconciled", default=None)
    conditions: list[Condition] = field("Ready, Reconciling, Degraded, Warning", default_factory=list,
                                        list_map_keys=("type",), emit_default=False)  # fmt: skip
    replicas: int | None = field("Brokers in the StatefulSet", default=None)
    ready_replicas: int = field("Brokers ready", default=0, emit_default=False)
    label_selector: str | None = field("Selector of the broker pods (scale subresource)", default=None)
    version: str | None = field("The Tidelog version every broker runs", default=None)
    controller_id: int | None = field("The broker that is the controller", default=None)
    under_replicated_partitions: int | None = field("Partitions with ISR smaller than replicas", default=None)
    offline_partitions: int | None = field("Partitions without a live leader", default=None)
    bootstrap_address: str | None = field("In-cluster bootstrap HOST:PORT", default=None)
    external_bootstrap_address: str | None = field("External bootstrap HOST:PORT", default=None)
    brokers: list[BrokerStatus] = field("The brokers", default_factory=list, emit_default=False)
    scaling: ScalingStatus | None = field("Scaling in progress", default=None)
    roll: RollStatus | None = field("Rolling restart in progress", default=None)
    certificates: CertificatesStatus | None = field("Broker certificates (TLS listeners)", default=None)


# ----- Topic -----


@dataclass(kw_only=True)
class ClusterRef:
    """The Cluster (in the Topic's namespace) that holds the topic."""

    name: str = field("The Cluster's name", pattern=DNS_LABEL_PATTERN, max_length=63)


@dataclass(kw_only=True)
class TopicSpec:
    """The desired state of a Kafka topic."""

    __rules__ = (Rule("has(self.topicName) == has(oldSelf.topicName)", "topicName cannot be added or removed"),)

    cluster_ref: ClusterRef = field(
        "The Cluster holding the topic; cannot change",
        rules=(Rule("self.name == oldSelf.name", "clusterRef cannot change"),),
    )
    topic_name: str | None = field(
        "The topic's name in Kafka (default: metadata.name); cannot change",
        default=None,
        pattern=TOPIC_NAME_PATTERN,
        max_length=249,
        rules=(Rule("self == oldSelf", "topicName cannot change"),),
    )
    partitions: int = field(
        "Number of partitions; may grow, never shrink",
        minimum=1,
        maximum=100000,
        rules=(Rule("self >= oldSelf", "partitions may not decrease", reason="FieldValueForbidden"),),
    )
    replicas: int = field("Replication factor (a change is a reassignment)", minimum=1, maximum=32767)
    config: dict[str, IntOrString] = field(
        "Topic configs, Kafka's names (retention.ms, cleanup.policy, ...)",
        default_factory=dict,
        max_properties=256,
        rules=_config_rules(()),
    )


@dataclass(kw_only=True)
class PartitionStatus:
    """One partition's leader and replicas."""

    partition: int = field("Partition index", minimum=0)
    leader: int = field("Leader broker (-1: none)")
    replicas: list[int] = field("Replica brokers", default_factory=list)
    isr: list[int] = field("In-sync replicas", default_factory=list)


@dataclass(kw_only=True)
class ReplicasChange:
    """A replication-factor change in progress (a reassignment)."""

    target_replicas: int = field("Replication factor being moved to", minimum=1)
    state: Literal["Pending", "Ongoing"] = field("Pending or Ongoing", default="Pending")
    message: str | None = field("Progress", default=None)


@dataclass(kw_only=True)
class TopicStatus:
    """The observed state of a topic, written by the operator."""

    observed_generation: int | None = field("The generation last reconciled", default=None)
    conditions: list[Condition] = field("Ready, Warning, ...", default_factory=list,
                                        list_map_keys=("type",), emit_default=False)  # fmt: skip
    topic_name: str | None = field("The topic's name in Kafka", default=None)
    topic_id: str | None = field("The topic's id", default=None)
    partitions: int | None = field("Partitions in Kafka", default=None)
    replicas: int | None = field("Replication factor in Kafka", default=None)
    under_replicated: int | None = field("Partitions with ISR smaller than replicas", default=None)
    offline: int | None = field("Partitions without a leader", default=None)
    partition_details: list[PartitionStatus] = field(
        "Leaders and ISR per partition (the first 1000)", default_factory=list, max_items=1000, emit_default=False
    )
    replicas_change: ReplicasChange | None = field("Replication-factor change in progress", default=None)
