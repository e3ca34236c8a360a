"""The Helm chart (charts/remediator), rendered by Helm's own engine for the default values
and several value sets: every manifest is valid Kubernetes, the pod passes Pod Security
Admission's restricted level, the RBAC is what the rules' actions need and equals
`remediator rbac` for the same rules, the rules ConfigMap passes `remediator check`, the
container's command line configures the service as intended, and the values schema
refuses what it does not know."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from remediator.cli import main as cli_main
from remediator.cli import options
from remediator.config import from_sources
from remediator.runtime.objects import redactor
from tests.support.chart import CHART_DIR, REPO, Manifest, Rendered, render

KUBERNETES_VERSION = "1.36"
NAMESPACE = "monitoring"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
DSN = "postgresql://remediator:secret@state-db.db.svc:5432/remediator"


def rule_file(
    *actions: dict[str, Any] | str,
    namespaces: tuple[str, ...] = ("team-a", "team-b"),
    shadow: bool = False,
) -> str:
    """A rule file whose rules use ``actions`` (inline ``{kind, params}`` or a declared
    action's name), targets fitting each kind (shadow rules when ``shadow``), and the
    catch-all."""
    rules: list[dict[str, Any]] = []
    for number, action in enumerate(actions):
        kind = action["kind"] if isinstance(action, dict) else DECLARED[action]["kind"]
        target = {
            "scale_out": {"kind": "Deployment", "namespace": "{namespace}", "name": "{deployment}"},
            "recycle_pod": {"kind": "Pod", "namespace": "{namespace}", "name": "{pod}"},
            "kill_query": {"kind": "Database", "name": "primary"},
            "log_only": {"kind": "Deployment", "namespace": "{namespace}", "name": "{deployment}"},
            "renew_certificate": {
                "kind": "Certificate",
                "namespace": "{namespace}",
                "name": "{name}",
            },
        }.get(kind, {"kind": "Deployment", "namespace": "{namespace}", "name": "{deployment}"})
        labels = re.findall(r"{(\w+)}", json.dumps(target))  # check's unguaranteed-label
        rules.append(
            {
                "name": f"rule-{number}",
                "matchers": [f'alertname="Alert{number}"', *(f'{n}=~".+"' for n in labels)],
                "severity": "SEV-3",
                "action": action,
                "target": target,
                **({"shadow": True} if shadow else {}),
            }
        )
    rules.append({"name": "default", "matchers": [], "severity": "SEV-3"})
    document: dict[str, Any] = {
        "policy": {"namespaces": list(namespaces)},
        "defaults": {"escalation": {"SEV-1": "page", "SEV-2": "page", "SEV-3": "page"}},
        "escalations": {"page": {"tiers": [{"after_s": 0, "notify": ["oncall"]}]}},
        "rules": rules,
    }
    used = {a for a in actions if isinstance(a, str)}
    if used:
        document["actions"] = {name: DECLARED[name] for name in sorted(used)}
    return yaml.safe_dump(document, sort_keys=False)


SCALE_OUT = {"kind": "scale_out", "params": {"step": 1, "max_replicas": 5}}
SCALE_OUT_RAISE_MIN = {
    "kind": "scale_out",
    "params": {"step": 1, "max_replicas": 5, "hpa": "raise_min"},
}
RECYCLE_POD = {"kind": "recycle_pod", "params": {"min_healthy": 1}}
RECYCLE_POD_DELETE = {
    "kind": "recycle_pod",
    "params": {"min_healthy": 1, "allow_delete_fallback": True},
}
KILL_QUERY = {"kind": "kill_query", "params": {"min_duration_s": 60, "max_per_run": 1}}
LOG_ONLY = {"kind": "log_only", "params": {"note": "watching"}}
ROLLBACK = {"kind": "rollback", "params": {"max_age_s": 900}}
RESTART_ROLLOUT = {"kind": "restart_rollout", "params": {"min_healthy": "75%"}}
RENEW_CERTIFICATE = {"kind": "renew_certificate", "params": {"renew_before_expiry_s": 1814400}}
DECLARED: dict[str, dict[str, Any]] = {
    "declared-scale": SCALE_OUT_RAISE_MIN,
    "declared-recycle": RECYCLE_POD_DELETE,
}


def with_rules(**files: str) -> dict[str, Any]:
    return {"rules": {"files": {f"{name}.yaml": text for name, text in files.items()}}}


VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"replicaCount": 5, "persistence": {"size": "5Gi", "storageClass": "fast"}},
    "postgresql-ha": {
        "store": {"type": "postgresql", "postgresql": {"dsn": DSN, "spool": True}},
        "replicaCount": 3,
    },
    "cluster-role": {"rbac": {"clusterRole": True}},
    "given-secrets": {
        "webhook": {"token": "a-token-of-ours"},
        "sinks": {"secrets": {"pagerduty-key": "pd-key", "slack-webhook": "https://hooks/x"}},
        "databases": {"primary": {"dsn": "postgresql://kill@db.db.svc/app"}},
        "dryRun": True,
    },
    "existing-secrets": {
        "store": {
            "type": "postgresql",
            "postgresql": {"existingSecret": "state-db", "existingSecretKey": "url"},
        },
        "webhook": {"existingSecret": "am-token", "existingSecretKey": "bearer"},
        "sinks": {"existingSecret": "sink-keys"},
        "databases": {"primary": {"existingSecret": "primary-db", "key": "dsn"}},
        "persistence": {"existingClaim": "ignored-with-postgresql"},
    },
    "existing-claim": {"persistence": {"existingClaim": "my-state"}},
    "archive": {
        "archive": {
            "bucket": "team-archive",
            "prefix": "prod/remediator",
            "region": "eu-west-1",
            "sse": "aws:kms",
            "kmsKeyId": "alias/remediator",
            "retentionSeconds": 2592000,
            "evidence": {
                "presignSeconds": 3600,
                "logLines": 50,
                "redactPatterns": ["cust-[0-9]{6}"],
            },
        },
        "networkPolicy": {"objectStore": [{"cidr": "10.9.0.0/16", "port": 9000}]},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
    },
    "everything-off": {
        "networkPolicy": {"enabled": False},
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "dashboard": {"enabled": False},
        "rules": {"watchSeconds": 0},
    },
    "restart-on-change": {"rules": {"restartOnChange": True}},
    "restart-on-change-scale-out": {
        "rules": {**with_rules(a=rule_file(SCALE_OUT))["rules"], "restartOnChange": True}
    },
    "scale-out": with_rules(a=rule_file(SCALE_OUT)),
    "scale-out-raise-min": with_rules(a=rule_file(SCALE_OUT_RAISE_MIN)),
    "recycle-pod": with_rules(a=rule_file(RECYCLE_POD)),
    "recycle-pod-delete-fallback": with_rules(a=rule_file(RECYCLE_POD_DELETE)),
    "kill-query": with_rules(a=rule_file(KILL_QUERY)),
    "log-only": with_rules(a=rule_file(LOG_ONLY)),
    "escalate-only": with_rules(a=rule_file()),
    "shadow-rollback": with_rules(a=rule_file(ROLLBACK, shadow=True)),
    "declared-actions": with_rules(
        a=rule_file("declared-scale", "declared-recycle", KILL_QUERY, namespaces=("apps",))
    ),
    "every-action-cluster-role": {
        **with_rules(
            a=rule_file(
                SCALE_OUT,
                RECYCLE_POD,
                LOG_ONLY,
                KILL_QUERY,
                RENEW_CERTIFICATE,
                ROLLBACK,
                RESTART_ROLLOUT,
                namespaces=("ns-x", "ns-y", "ns-z"),
            )
        ),
        "rbac": {"clusterRole": True},
    },
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {name: render(values) for name, values in VALUE_SETS.items()}


def pod_spec(release: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = release.one("Deployment")["spec"]["template"]["spec"]
    return spec


def container(release: Rendered) -> dict[str, Any]:
    containers = pod_spec(release)["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(release: Rendered) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(release).get("env", [])}


def flag_value(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} given {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def secret_data(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def rule_files_of(release: Rendered) -> dict[str, str]:
    data: dict[str, str] = release.one("ConfigMap", "remediator-rules")["data"]
    return data


def write_rules(release: Rendered, directory: Path) -> Path:
    for name, text in rule_files_of(release).items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`remediator ARGS`: the command line's own entry point, in this process (a child
    process would spend seconds importing on a loaded machine, a dozen times a module)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli_main.main(list(args), environ={})
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding")


def rbac_documents(manifests: list[Manifest]) -> list[Manifest]:
    """The RBAC documents with the chart's labels dropped, in a stable order."""
    documents = []
    for m in manifests:
        if m["kind"] not in RBAC_KINDS:
            continue
        metadata = {k: v for k, v in m["metadata"].items() if k not in ("labels", "annotations")}
        documents.append({**m, "metadata": metadata})
    return sorted(
        documents,
        key=lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]),
    )


def grants(manifests: list[Manifest]) -> set[tuple[str, str, str, str]]:
    """(namespace, apiGroup, resource, verb) that the bindings give the ServiceAccount."""
    roles = {
        (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): m
        for m in manifests
        if m["kind"] in ("Role", "ClusterRole")
    }
    found = set()
    for binding in (m for m in manifests if m["kind"] == "RoleBinding"):
        namespace = binding["metadata"]["namespace"]
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])]
        for rule in role.get("rules") or []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        found.add((namespace, group, resource, verb))
    return found


def bindings(manifests: list[Manifest]) -> set[tuple[str, str, str, str, tuple[Any, ...]]]:
    return {
        (
            m["metadata"]["namespace"],
            m["metadata"]["name"],
            m["roleRef"]["kind"],
            m["roleRef"]["name"],
            tuple(sorted((s["kind"], s["name"], s["namespace"]) for s in m["subjects"])),
        )
        for m in manifests
        if m["kind"] == "RoleBinding"
    }


# -- the files ---------------------------------------------------------------------------


def test_the_chart_ships_byte_copies_of_the_repository_rules() -> None:
    shipped = sorted(p.name for p in (CHART_DIR / "files" / "rules").glob("*.yaml"))
    repo = sorted(p.name for p in (REPO / "rules").glob("*.yaml"))
    assert shipped == repo
    for name in repo:
        assert (CHART_DIR / "files" / "rules" / name).read_bytes() == (
            REPO / "rules" / name
        ).read_bytes(), name


def test_the_chart_metadata_names_the_package_version() -> None:
    metadata = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert metadata["apiVersion"] == "v2"
    assert metadata["name"] == "remediator"
    assert metadata["version"] == "0.1.0"
    assert f'version = "{metadata["appVersion"]}"' in pyproject


def test_the_chart_passes_helm_lint_strict() -> None:
    report = helm_python.lint(CHART_DIR, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# -- every manifest is valid -------------------------------------------------------------


def check_crd_structurally(manifest: Manifest) -> None:
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["metadata"]["name"] and manifest["metadata"]["namespace"] == NAMESPACE
    spec = manifest["spec"]
    if manifest["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
        assert spec["selector"]["matchLabels"]
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
            assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
    else:
        assert set(spec) == {"groups"}
        for group in spec["groups"]:
            assert isinstance(group["name"], str) and group["rules"]
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert isinstance(rule["expr"], str | int)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(rendered: dict[str, Rendered], value_set: str) -> None:
    release = rendered[value_set]
    assert release.manifests
    for manifest, source in zip(release.manifests, release.sources, strict=True):
        if manifest["kind"] in CRD_KINDS:
            check_crd_structurally(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{source}: {manifest['kind']} {path}: {exc.message}")
        if manifest["kind"] not in ("ClusterRole",):
            assert manifest["metadata"]["namespace"], f"{source}: no namespace"


def test_each_object_is_rendered_once_with_the_chart_labels(rendered: dict[str, Rendered]) -> None:
    for value_set, release in rendered.items():
        keys = [
            (m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"])
            for m in release.manifests
        ]
        assert len(keys) == len(set(keys)), value_set
        for m in release.manifests:
            labels = m["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "remediator"
            assert labels["app.kubernetes.io/instance"] == "remediator"
            assert labels["helm.sh/chart"] == "remediator-0.1.0"


# -- hardening ---------------------------------------------------------------------------

PSA_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_the_pod_passes_pod_security_restricted(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    """The checks of Pod Security Admission's baseline and restricted levels."""
    spec = pod_spec(rendered[value_set])
    for host in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert host not in spec or (spec[host] is False and host != "hostUsers"), host
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001 and pod_sc["runAsGroup"] == 10001
    assert pod_sc["fsGroup"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "sysctls" not in pod_sc
    for volume in spec["volumes"]:
        sources = set(volume) - {"name"}
        assert sources <= PSA_RESTRICTED_VOLUMES, volume
    assert not spec.get("initContainers") and not spec.get("ephemeralContainers")
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert "procMount" not in sc and "appArmorProfile" not in sc
        assert all("hostPort" not in p for p in c["ports"])
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert {"/tmp", "/var/lib/remediator"} <= set(mounts)
        writable = {p for p, m in mounts.items() if not m.get("readOnly")}
        assert writable == {"/tmp", "/var/lib/remediator"}
        assert env_of(rendered[value_set])["HOME"]["value"] == "/tmp"
        assert c["resources"] == {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        }


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_the_chart_grants_nothing_on_secrets_and_no_wildcards(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    release = rendered[value_set]
    for role in release.of_kind("Role") + release.of_kind("ClusterRole"):
        for rule in role.get("rules") or []:
            assert "secrets" not in rule["resources"], role["metadata"]
            for field in ("apiGroups", "resources", "verbs"):
                assert all("*" not in item for item in rule[field]), rule
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule
    assert not release.of_kind("ClusterRoleBinding")
    for binding in release.of_kind("RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "remediator", "namespace": NAMESPACE}
        ]


def test_the_service_account_token_is_mounted_only_for_the_actions(
    rendered: dict[str, Rendered],
) -> None:
    spec = pod_spec(rendered["default"])
    assert spec["serviceAccountName"] == "remediator"
    assert spec["automountServiceAccountToken"] is True
    account = rendered["default"].one("ServiceAccount", "remediator")
    assert account["automountServiceAccountToken"] is True


# -- RBAC from the rules -----------------------------------------------------------------

EXAMPLE_GRANTS = {
    ("", "events", "create"), ("", "pods/eviction", "create"), ("", "pods", "get"),
    ("", "pods", "list"), ("apps", "deployments", "get"), ("apps", "replicasets", "get"),
    ("apps", "deployments/scale", "get"), ("apps", "deployments/scale", "patch"),
    ("autoscaling", "horizontalpodautoscalers", "list"), ("", "events", "list"),
    ("apps", "replicasets", "list"), ("", "pods/log", "get"), ("keda.sh", "scaledobjects", "list"),
}  # fmt: skip
# What the evidence bundles read besides the actions' own calls (rbac.EVIDENCE_READS).
DEPLOYMENT_EVIDENCE = {
    ("apps", "deployments", "get"), ("apps", "replicasets", "list"),
    ("autoscaling", "horizontalpodautoscalers", "list"), ("", "events", "list"),
}  # fmt: skip
POD_EVIDENCE = {("", "pods", "get"), ("", "pods/log", "get"), ("", "events", "list")}
SCALE_OUT_GRANTS = DEPLOYMENT_EVIDENCE | {
    ("apps", "deployments", "get"), ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"), ("autoscaling", "horizontalpodautoscalers", "list"),
    ("keda.sh", "scaledobjects", "list"), ("", "events", "create"),
}  # fmt: skip
RECYCLE_GRANTS = {
    ("", "pods", "get"), ("", "pods", "list"), ("", "pods/eviction", "create"),
    ("apps", "replicasets", "get"), ("apps", "deployments", "get"), ("", "events", "create"),
} | DEPLOYMENT_EVIDENCE | POD_EVIDENCE  # fmt: skip
TEMPLATE_GRANTS = DEPLOYMENT_EVIDENCE | {
    ("apps", "deployments", "get"), ("apps", "deployments", "patch"),
    ("apps", "replicasets", "list"), ("", "events", "create"),
}  # fmt: skip
RENEW_GRANTS = {
    ("cert-manager.io", "certificates", "get"), ("cert-manager.io", "certificates/status", "patch"),
    ("", "events", "create"), ("", "events", "list"),
}  # fmt: skip
HPA_PATCH = {("autoscaling", "horizontalpodautoscalers", "patch")}
POD_DELETE = {("", "pods", "delete")}


@pytest.mark.parametrize(
    ("value_set", "namespaces", "expected"),
    [
        ("default", ("llm-research",), EXAMPLE_GRANTS),
        ("cluster-role", ("llm-research",), EXAMPLE_GRANTS),
        ("scale-out", ("team-a", "team-b"), SCALE_OUT_GRANTS),
        ("scale-out-raise-min", ("team-a", "team-b"), SCALE_OUT_GRANTS | HPA_PATCH),
        ("recycle-pod", ("team-a", "team-b"), RECYCLE_GRANTS),
        ("recycle-pod-delete-fallback", ("team-a", "team-b"), RECYCLE_GRANTS | POD_DELETE),
        ("kill-query", ("team-a", "team-b"), set()),
        ("log-only", ("team-a", "team-b"), set()),
        ("escalate-only", ("team-a", "team-b"), set()),
        # A shadow rule never writes: its precheck's reads and nothing more.
        ("shadow-rollback", ("team-a", "team-b"), DEPLOYMENT_EVIDENCE),
        ("declared-actions", ("apps",), SCALE_OUT_GRANTS | HPA_PATCH | RECYCLE_GRANTS | POD_DELETE),
        (
            "every-action-cluster-role",
            ("ns-x", "ns-y", "ns-z"),
            SCALE_OUT_GRANTS | RECYCLE_GRANTS | RENEW_GRANTS | TEMPLATE_GRANTS,
        ),
    ],
)
def test_the_rbac_is_what_the_rules_actions_need_in_each_allowed_namespace(
    rendered: dict[str, Rendered],
    value_set: str,
    namespaces: tuple[str, ...],
    expected: set[tuple[str, str, str]],
) -> None:
    release = rendered[value_set]
    assert grants(release.manifests) == {(ns, *g) for ns in namespaces for g in expected}
    cluster_role = VALUE_SETS[value_set].get("rbac", {}).get("clusterRole", False)
    assert len(release.of_kind("ClusterRole")) == (1 if cluster_role else 0)
    assert len(release.of_kind("Role")) == (0 if cluster_role else len(namespaces))
    assert sorted(b["metadata"]["namespace"] for b in release.of_kind("RoleBinding")) == sorted(
        namespaces
    )


RBAC_EQUALITY_SETS = sorted(
    name for name, values in VALUE_SETS.items() if "rules" in values or name == "default"
)


def assert_rbac_equals_cli(release: Rendered, tmp_path: Path, *form: str) -> None:
    rules_dir = write_rules(release, tmp_path)
    printed = run_cli(
        "rbac", "--rules", str(rules_dir), "--service-account", "remediator",
        "--service-account-namespace", NAMESPACE, "--name", "remediator", *form,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    expected = [d for d in yaml.safe_load_all(printed.stdout) if d is not None]
    chart = [m for m in release.manifests if m["kind"] in RBAC_KINDS]
    assert grants(chart) == grants(expected)
    assert bindings(chart) == bindings(expected)
    assert rbac_documents(chart) == rbac_documents(expected)


@pytest.mark.parametrize("value_set", RBAC_EQUALITY_SETS)
def test_the_role_per_namespace_rbac_equals_what_remediator_rbac_prints(
    value_set: str, tmp_path: Path
) -> None:
    values = {**VALUE_SETS[value_set], "rbac": {"clusterRole": False}}
    assert_rbac_equals_cli(render(values), tmp_path)


@pytest.mark.parametrize("value_set", RBAC_EQUALITY_SETS)
def test_the_cluster_role_rbac_equals_what_remediator_rbac_cluster_role_prints(
    value_set: str, tmp_path: Path
) -> None:
    values = {**VALUE_SETS[value_set], "rbac": {"clusterRole": True}}
    assert_rbac_equals_cli(render(values), tmp_path, "--cluster-role")


def test_rbac_can_be_left_to_the_platform_team() -> None:
    release = render({"rbac": {"create": False}})
    assert not [m for m in release.manifests if m["kind"] in RBAC_KINDS]


def test_a_rule_naming_an_undeclared_action_fails_the_render() -> None:
    text = rule_file(SCALE_OUT)
    document = yaml.safe_load(text)
    document["rules"][0]["action"] = "nowhere"
    with pytest.raises(helm_python.HelmRenderError, match="nowhere"):
        render(with_rules(a=yaml.safe_dump(document)))


def test_a_namespace_helm_would_read_as_a_boolean_fails_the_render() -> None:
    text = rule_file(SCALE_OUT, namespaces=("ns-a",)).replace("- ns-a", "- y")
    assert yaml.safe_load(text)["policy"]["namespaces"] == ["y"]
    with pytest.raises(helm_python.HelmRenderError, match="quote it"):
        render(with_rules(a=text))


# -- rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", ["default", *RBAC_EQUALITY_SETS])
def test_the_rules_configmap_passes_remediator_check(
    rendered: dict[str, Rendered], value_set: str, tmp_path: Path
) -> None:
    checked = run_cli("check", "--rules", str(write_rules(rendered[value_set], tmp_path)))
    assert checked.returncode == 0, checked.stderr


README_VALUES = re.compile(r"^```yaml values\n(.*?)^```", re.S | re.M)


def readme_values() -> list[dict[str, Any]]:
    blocks = README_VALUES.findall((REPO / "README.md").read_text())
    assert len(blocks) >= 2, "the install guide shows its values blocks"
    return [yaml.safe_load(block) for block in blocks]


@pytest.mark.parametrize("values", readme_values(), ids=lambda v: "+".join(sorted(v)))
def test_every_values_block_of_the_install_guide_renders_and_its_rules_pass_check(
    values: dict[str, Any], tmp_path: Path
) -> None:
    release = render(values)
    checked = run_cli("check", "--rules", str(write_rules(release, tmp_path)))
    assert checked.returncode == 0, checked.stderr


def test_the_rules_configmap_holds_the_given_files_or_the_shipped_ones(
    rendered: dict[str, Rendered],
) -> None:
    shipped = {p.name: p.read_text() for p in (REPO / "rules").glob("*.yaml")}
    assert rule_files_of(rendered["default"]) == shipped
    assert rule_files_of(rendered["scale-out"]) == VALUE_SETS["scale-out"]["rules"]["files"]


def test_the_rules_are_mounted_as_a_directory_and_a_change_is_reloaded_or_rolls_the_pods(
    rendered: dict[str, Rendered],
) -> None:
    mount = next(m for m in container(rendered["default"])["volumeMounts"] if m["name"] == "rules")
    assert mount == {"name": "rules", "mountPath": "/etc/remediator/rules", "readOnly": True}
    volume = next(v for v in pod_spec(rendered["default"])["volumes"] if v["name"] == "rules")
    assert volume == {"name": "rules", "configMap": {"name": "remediator-rules"}}

    def annotations(release: Rendered) -> dict[str, str]:
        found: dict[str, str] = release.one("Deployment")["spec"]["template"]["metadata"][
            "annotations"
        ]
        return found

    def watch(release: Rendered) -> str | None:
        args: list[str] = container(release)["args"]
        flag = "--rules-watch-seconds"
        return args[args.index(flag) + 1] if flag in args else None

    # By default a changed ConfigMap is reloaded in place (the kubelet swaps a directory
    # mount's files; a subPath mount would never change): no checksum rolls the pods.
    default, other = annotations(rendered["default"]), annotations(rendered["scale-out"])
    assert (watch(rendered["default"]), watch(rendered["everything-off"])) == ("10", "0")
    assert "checksum/rules" not in default and "subPath" not in mount
    assert default["checksum/config"] == other["checksum/config"]
    rolling = annotations(rendered["restart-on-change"])
    rolling_other = annotations(rendered["restart-on-change-scale-out"])
    assert rolling["checksum/rules"] != rolling_other["checksum/rules"]
    restart_again = render({"rules": {"restartOnChange": True}})
    assert rolling["checksum/rules"] == annotations(restart_again)["checksum/rules"]
    assert annotations(rendered["given-secrets"])["checksum/config"] != default["checksum/config"]
    more_sinks = render({"sinks": {"secrets": {"pagerduty-key": "another"}}})
    assert annotations(more_sinks)["checksum/config"] != default["checksum/config"]


# -- the command line and the store ------------------------------------------------------


def service_settings(release: Rendered, secrets: dict[str, str] | None = None) -> Any:
    """The service's Settings for the container's args and env, as `serve` builds them,
    with $(POD_NAME) expanded as the kubelet does and Secret-sourced variables filled."""
    c = container(release)
    assert "command" not in c, "the image's ENTRYPOINT (remediator) runs"
    args = [a.replace("$(POD_NAME)", "remediator-7d9f-abcde") for a in c["args"]]
    environ = {}
    for name, entry in env_of(release).items():
        if "value" in entry:
            environ[name] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            environ[name] = (secrets or {})[entry["valueFrom"]["secretKeyRef"]["key"]]
    parsed = cli_main.parser().parse_args(args)
    assert parsed.command == "serve"
    flags = options.given(parsed, (options.RULES, options.STATE, *options.SERVE))
    return from_sources(flags, environ)


def test_the_container_command_line_configures_the_service(
    rendered: dict[str, Rendered],
) -> None:
    settings = service_settings(rendered["default"])
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 9095)
    assert str(settings.rules_dir) == "/etc/remediator/rules"
    assert str(settings.token_file) == "/etc/remediator/webhook/token"
    assert settings.state_url == "sqlite:////var/lib/remediator/remediator.db"
    assert settings.instance_id == "remediator-7d9f-abcde"
    assert settings.log_format == "json"
    assert settings.shutdown_grace_s == 30
    assert settings.dry_run is False
    assert settings.kubeconfig is None
    assert dict(settings.databases) == {}

    given = service_settings(rendered["given-secrets"])
    assert given.dry_run is True
    assert dict(given.databases) == {"primary": "file:/etc/remediator/databases/primary"}

    ha = service_settings(rendered["postgresql-ha"], {"dsn": DSN})
    assert ha.state_url == DSN
    assert str(ha.journal_spool) == "/var/lib/remediator/spool.db"


def test_termination_waits_longer_than_the_drain() -> None:
    release = render({"shutdownGraceSeconds": 50})
    assert pod_spec(release)["terminationGracePeriodSeconds"] == 65
    assert env_of(release)["REMEDIATOR_SHUTDOWN_GRACE_SECONDS"]["value"] == "50"
    assert pod_spec(render({}))["terminationGracePeriodSeconds"] == 45


def test_the_probes_ask_healthz_and_readyz_on_the_http_port(
    rendered: dict[str, Rendered],
) -> None:
    c = container(rendered["default"])
    assert c["ports"] == [{"name": "http", "containerPort": 9095, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_sqlite_forces_one_replica_recreated_on_a_persistent_volume(
    rendered: dict[str, Rendered],
) -> None:
    release = rendered["sqlite"]
    deployment = release.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = release.one("PersistentVolumeClaim", "remediator-state")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    state = next(v for v in pod_spec(release)["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"] == {"claimName": "remediator-state"}
    assert not release.of_kind("PodDisruptionBudget")
    assert "REMEDIATOR_STATE" not in env_of(release)

    existing = rendered["existing-claim"]
    assert not existing.of_kind("PersistentVolumeClaim")
    state = next(v for v in pod_spec(existing)["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"] == {"claimName": "my-state"}


def test_one_postgresql_replica_has_no_disruption_budget_that_would_block_node_drains() -> None:
    release = render(
        {"store": {"type": "postgresql", "postgresql": {"dsn": DSN}}, "replicaCount": 1}
    )
    assert release.one("Deployment")["spec"]["replicas"] == 1
    assert not release.of_kind("PodDisruptionBudget")


def test_postgresql_runs_replicas_spread_with_a_disruption_budget(
    rendered: dict[str, Rendered],
) -> None:
    release = rendered["postgresql-ha"]
    deployment = release.one("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = release.one("PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    (term,) = pod_spec(release)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": selector}
    args = container(release)["args"]
    assert flag_value(args, "--instance-id") == "$(POD_NAME)"
    env = env_of(release)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ref = env["REMEDIATOR_STATE"]["valueFrom"]["secretKeyRef"]
    assert secret_data(release.one("Secret", ref["name"]))[ref["key"]] == DSN
    assert "--state" not in args
    assert flag_value(args, "--journal-spool") == "/var/lib/remediator/spool.db"
    state = next(v for v in pod_spec(release)["volumes"] if v["name"] == "state")
    assert "emptyDir" in state
    assert not release.of_kind("PersistentVolumeClaim")


def test_postgresql_without_a_dsn_does_not_render() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"store\.postgresql\.dsn"):
        render({"store": {"type": "postgresql"}})


# -- secrets -----------------------------------------------------------------------------


def volume(release: Rendered, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in pod_spec(release)["volumes"] if v["name"] == name)
    return found


def mount_path(release: Rendered, name: str) -> str:
    path: str = next(m for m in container(release)["volumeMounts"] if m["name"] == name)[
        "mountPath"
    ]
    return path


def test_a_webhook_token_is_generated_given_or_referenced(
    rendered: dict[str, Rendered],
) -> None:
    generated = secret_data(rendered["default"].one("Secret", "remediator-webhook"))["token"]
    assert len(generated) == 40 and generated.isalnum()
    assert volume(rendered["default"], "webhook-token")["secret"]["items"] == [
        {"key": "token", "path": "token"}
    ]
    assert mount_path(rendered["default"], "webhook-token") == "/etc/remediator/webhook"

    given = rendered["given-secrets"]
    assert secret_data(given.one("Secret", "remediator-webhook")) == {"token": "a-token-of-ours"}

    existing = rendered["existing-secrets"]
    assert "remediator-webhook" not in [s["metadata"]["name"] for s in existing.of_kind("Secret")]
    secret = volume(existing, "webhook-token")["secret"]
    assert secret["secretName"] == "am-token"
    assert secret["items"] == [{"key": "bearer", "path": "token"}]


def test_sink_secrets_are_mounted_from_a_secret_of_ours_or_an_existing_one(
    rendered: dict[str, Rendered],
) -> None:
    given = rendered["given-secrets"]
    assert secret_data(given.one("Secret", "remediator-sinks")) == {
        "pagerduty-key": "pd-key",
        "slack-webhook": "https://hooks/x",
    }
    assert volume(given, "sinks")["secret"]["secretName"] == "remediator-sinks"
    assert mount_path(given, "sinks") == "/etc/remediator/sinks"
    existing = rendered["existing-secrets"]
    assert volume(existing, "sinks")["secret"]["secretName"] == "sink-keys"
    assert not [s for s in existing.of_kind("Secret") if s["metadata"]["name"].endswith("sinks")]
    assert "sinks" not in [v["name"] for v in pod_spec(rendered["default"])["volumes"]]


def test_database_dsns_are_files_named_by_the_database(rendered: dict[str, Rendered]) -> None:
    for value_set, secret_name, key in [
        ("given-secrets", "remediator-databases", "primary"),
        ("existing-secrets", "primary-db", "dsn"),
    ]:
        release = rendered[value_set]
        assert mount_path(release, "databases") == "/etc/remediator/databases"
        (source,) = volume(release, "databases")["projected"]["sources"]
        assert source == {
            "secret": {"name": secret_name, "items": [{"key": key, "path": "primary"}]}
        }
        args = container(release)["args"]
        assert flag_value(args, "--database") == "primary=file:/etc/remediator/databases/primary"
    dsns = secret_data(rendered["given-secrets"].one("Secret", "remediator-databases"))
    assert dsns == {"primary": "postgresql://kill@db.db.svc/app"}
    existing = rendered["existing-secrets"]
    ref = env_of(existing)["REMEDIATOR_STATE"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "state-db", "key": "url"}
    assert not existing.of_kind("Secret")


# -- network -----------------------------------------------------------------------------


def test_the_service_and_service_monitor_expose_the_http_port(
    rendered: dict[str, Rendered],
) -> None:
    release = rendered["default"]
    service = release.one("Service")
    pod_labels = release.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9095, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = release.one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "scheme": "http", "interval": "30s"}
    ]
    labelled = render({"serviceMonitor": {"labels": {"release": "kps"}, "interval": "15s"}})
    assert labelled.one("ServiceMonitor")["metadata"]["labels"]["release"] == "kps"
    assert labelled.one("ServiceMonitor")["spec"]["endpoints"][0]["interval"] == "15s"


def test_the_network_policy_admits_alertmanager_prometheus_and_the_named_ack_ingress_only(
    rendered: dict[str, Rendered],
) -> None:
    release = rendered["default"]
    policy = release.one("NetworkPolicy")["spec"]
    assert policy["podSelector"] == release.one("Deployment")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": 9095, "protocol": "TCP"}]
    assert [peer["podSelector"]["matchLabels"] for peer in ingress["from"]] == [
        {"app.kubernetes.io/name": "alertmanager"},
        {"app.kubernetes.io/name": "prometheus"},
    ]
    assert all(peer["namespaceSelector"] == {} for peer in ingress["from"])

    def egress(spec: dict[str, Any]) -> set[tuple[str, str, int]]:
        found = set()
        for rule in spec["egress"]:
            for peer in rule["to"]:
                where = peer["ipBlock"]["cidr"] if "ipBlock" in peer else "kube-dns"
                for port in rule["ports"]:
                    found.add((where, port["protocol"], port["port"]))
        return found

    assert egress(policy) == {
        ("kube-dns", "UDP", 53), ("kube-dns", "TCP", 53),
        ("0.0.0.0/0", "TCP", 443), ("0.0.0.0/0", "TCP", 6443),
    }  # fmt: skip
    ingress_controller = {"namespaceSelector": {"matchLabels": {"team": "edge"}},
                          "podSelector": {"matchLabels": {"app": "ingress-nginx"}}}  # fmt: skip
    acks = render({"networkPolicy": {"acknowledgements": [ingress_controller]}})
    (admitted,) = acks.one("NetworkPolicy")["spec"]["ingress"]
    assert admitted["from"][2] == ingress_controller and len(admitted["from"]) == 3
    databases = render({"networkPolicy": {"databases": [{"cidr": "10.1.2.0/24", "port": 5432}]}})
    assert ("10.1.2.0/24", "TCP", 5432) in egress(databases.one("NetworkPolicy")["spec"])
    assert not rendered["everything-off"].of_kind("NetworkPolicy")
    assert not rendered["everything-off"].of_kind("ServiceMonitor")


def test_the_archive_is_configured_through_the_environment_with_its_egress(
    rendered: dict[str, Rendered],
) -> None:
    env = {e["name"]: e.get("value") for e in container(rendered["archive"])["env"]}
    archive = ("S3", "RETENTION", "EVIDENCE")
    assert {k: v for k, v in env.items() if any(word in k for word in archive)} == {
        "REMEDIATOR_S3_BUCKET": "team-archive", "REMEDIATOR_S3_PREFIX": "prod/remediator",
        "REMEDIATOR_S3_REGION": "eu-west-1", "REMEDIATOR_S3_SSE": "aws:kms",
        "REMEDIATOR_S3_KMS_KEY_ID": "alias/remediator",
        "REMEDIATOR_AUDIT_RETENTION_SECONDS": "2592000",
        "REMEDIATOR_EVIDENCE_PRESIGN_SECONDS": "3600", "REMEDIATOR_EVIDENCE_LOG_LINES": "50",
        "REMEDIATOR_EVIDENCE_MAX_BYTES": "1048576", "REMEDIATOR_EVIDENCE_TIMEOUT_SECONDS": "3",
        "REMEDIATOR_EVIDENCE_REDACT_FILE": "/etc/remediator/redact/patterns",
    }  # fmt: skip
    egress = rendered["archive"].one("NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}],
            "ports": [{"port": 9000, "protocol": "TCP"}]} in egress  # fmt: skip
    default = rendered["default"]
    assert not [e for e in container(default)["env"] if e["name"].startswith("REMEDIATOR_S3")]
    assert "10.9.0.0/16" not in json.dumps(default.one("NetworkPolicy"))


def test_extra_redactions_are_a_mounted_file_the_service_reads_and_roll_the_pods(
    tmp_path: Path,
) -> None:
    patterns = ["cust-[0-9]{6}", "(?i)acct:[a-z0-9]+", "tenant=\\S+"]
    values = {"archive": {"bucket": "team-archive", "evidence": {"redactPatterns": patterns}}}
    release = render(values)
    text = release.one("ConfigMap", "remediator-redact")["data"]["patterns"]
    assert text.splitlines() == patterns
    env = {e["name"]: e.get("value") for e in container(release)["env"]}
    path = env["REMEDIATOR_EVIDENCE_REDACT_FILE"]
    [mount] = [m for m in container(release)["volumeMounts"] if m["name"] == "redact"]
    assert path == f"{mount['mountPath']}/patterns" and mount["readOnly"] is True
    [volume] = [v for v in pod_spec(release)["volumes"] if v["name"] == "redact"]
    assert volume["configMap"]["name"] == "remediator-redact"
    (tmp_path / "patterns").write_text(text)
    redacted = redactor(tmp_path / "patterns").text("cust-123456 ACCT:x9 tenant=blue ok")
    assert redacted.value == "[REDACTED] [REDACTED] [REDACTED] ok"
    annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    more = render({"archive": {"bucket": "team-archive",
                               "evidence": {"redactPatterns": [*patterns, "x{3}"]}}})  # fmt: skip
    again = more.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert again["checksum/config"] != annotations["checksum/config"]  # read at start only
    for off in ({}, {"archive": {"evidence": {"redactPatterns": patterns}}}):  # no bucket
        plain = render(off)
        assert not [
            m for m in plain.of_kind("ConfigMap") if m["metadata"]["name"].endswith("redact")
        ]
        assert "REMEDIATOR_EVIDENCE_REDACT_FILE" not in json.dumps(container(plain))


def test_silences_are_read_from_alertmanager_through_its_own_egress_and_token(
    rendered: dict[str, Rendered],
) -> None:
    urls = ["http://alertmanager-0.am:9093", "http://alertmanager-1.am:9093"]
    values = {"silences": {"alertmanagerUrls": urls, "tokenSecret": {"name": "am-api"},
                           "maxAgeSeconds": 60}}  # fmt: skip
    release = render(values)
    settings = service_settings(release)
    assert settings.alertmanager_urls == tuple(urls)
    assert (settings.silence_refresh_s, settings.silence_max_age_s) == (5, 60)
    assert settings.alertmanager_token_file == Path("/etc/remediator/alertmanager/token")
    [volume] = [v for v in pod_spec(release)["volumes"] if v["name"] == "alertmanager-token"]
    assert volume["secret"]["secretName"] == "am-api"
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    egress = release.one("NetworkPolicy")["spec"]["egress"]
    [to_am] = [rule for rule in egress if rule["ports"] == [{"port": 9093, "protocol": "TCP"}]]
    assert to_am["to"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "alertmanager"}
    }
    default = rendered["default"]
    assert "ALERTMANAGER" not in json.dumps(container(default)["env"])
    assert 9093 not in [p["port"] for r in default.one("NetworkPolicy")["spec"]["egress"]
                        for p in r["ports"]]  # fmt: skip


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": 3}, "replicaCont"),
        ({"store": {"type": "sqlite", "postgres": {"dsn": DSN}}}, "postgres"),
        ({"networkPolicy": {"enable": False}}, "enable"),
        ({"store": {"type": "mysql"}}, "store/type"),
        ({"databases": {"primary": {"dsn": "mysql://x"}}}, "databases"),
        ({"shutdownGraceSeconds": -1}, "shutdownGraceSeconds"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"archive": {"bucket": "Not_A_Bucket"}}, "bucket"),
        ({"archive": {"sse": "kms"}}, "sse"),
        ({"archive": {"evidence": {"presignSeconds": 604801}}}, "presignSeconds"),
        ({"archive": {"evidence": {"logLines": "all"}}}, "logLines"),
        ({"silences": {"alertmanagerUrls": ["alertmanager:9093"]}}, "alertmanagerUrls"),
        ({"silences": {"maxAgeSeconds": 0}}, "maxAgeSeconds"),
        (
            {"archive": {"evidence": {"redactPatterns": ["# a comment, not a pattern"]}}},
            "redactPatterns",
        ),
        ({"archive": {"evidence": {"redactPatterns": ["two\nlines"]}}}, "redactPatterns"),
        ({"archive": {"evidence": {"redactPatterns": [" padded"]}}}, "redactPatterns"),
        ({"archive": {"evidence": {"redactPatterns": "cust-[0-9]+"}}}, "redactPatterns"),
    ],
)
def test_the_values_schema_refuses_what_it_does_not_know(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)


def test_the_schema_describes_every_default_value() -> None:
    schema = helm_python.Chart.load(CHART_DIR).schema
    assert schema is not None
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


# -- NOTES -------------------------------------------------------------------------------


def test_the_notes_print_the_alertmanager_receiver(rendered: dict[str, Rendered]) -> None:
    release = render({}, name="ops", namespace="observability")
    notes = release.notes
    start = notes.index("receivers:")
    receiver = yaml.safe_load(notes[start:].split("\n\n")[0])
    (config,) = receiver["receivers"][0]["webhook_configs"]
    assert config["url"] == "http://ops-remediator.observability.svc:9095/webhook"
    assert config["send_resolved"] is True and config["max_alerts"] == 0
    auth = config["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert "ops-remediator-webhook" in auth["credentials_file"]
    assert (
        "kubectl -n observability get secret ops-remediator-webhook -o jsonpath='{.data.token}'"
        in notes
    )
    existing = rendered["existing-secrets"].notes
    assert "secret am-token -o jsonpath='{.data.bearer}'" in existing


def test_the_approvers_file_comes_from_its_secret_as_a_directory_mount(
    rendered: dict[str, Rendered],
) -> None:
    release = render({"approvals": {"approversSecret": {"name": "approvers", "key": "file"},
                                    "pollSeconds": 2}})  # fmt: skip
    settings = service_settings(release)
    assert settings.approvers_file == Path("/etc/remediator/approvers/approvers.yaml")
    assert settings.approvals_poll_s == 2
    [volume] = [v for v in pod_spec(release)["volumes"] if v["name"] == "approvers"]
    assert volume["secret"]["secretName"] == "approvers"
    assert volume["secret"]["items"] == [{"key": "file", "path": "approvers.yaml"}]
    [mount] = [m for m in container(release)["volumeMounts"] if m["name"] == "approvers"]
    assert "subPath" not in mount and mount["readOnly"] is True  # a rotated file arrives
    assert "APPROVERS" not in json.dumps(container(rendered["default"])["env"])
    for bad in ({"pollSeconds": 0}, {"approversSecret": {"name": "Not_A_Name"}},
                {"approversSecret": {"key": ""}}, {"approvers": []}):  # fmt: skip
        with pytest.raises(helm_python.HelmValuesError):
            render({"approvals": bad})
