#!/usr/bin/env python3
"""Checks the kvtier chart's rendered manifests (one render per values case) against what the chart promises.

Called by check_chart.sh, which renders the chart with helm-render. Uses only the standard library and PyYAML.
Every failed assertion is collected and printed; the exit status is 1 when there is any.

  check_chart.py CASE RENDERED.yaml REPO_ROOT          check one rendered case (CASES below)
  check_chart.py --rules RENDERED.yaml OUT.yaml        write the PrometheusRule's groups for `promtool check rules`
"""

import re
import sys
from pathlib import Path

import yaml

# What each case must render, and the values that drive the checks. Kept explicit rather than derived from
# the values files, so a template that silently ignores a value is caught.
CASES = {
    "default": {
        "values": None,
        "release": "demo",
        "namespace": "inference",
        "fullname": "demo-kvtier",
        "objects": {
            ("ConfigMap", "demo-kvtier"), ("ConfigMap", "demo-kvtier-client"), ("Service", "demo-kvtier"), ("Service", "demo-kvtier-headless"),
            ("StatefulSet", "demo-kvtier"), ("ServiceAccount", "demo-kvtier"),
            ("PodDisruptionBudget", "demo-kvtier"),
        },
        "service_account": "demo-kvtier",
        "replicas": 3,
        "storage": "pvc",
        "data_path": "/var/lib/kvtier",
        "tls_secret": None,
        "mutual_tls": False,
        "auth_secret": None,
        "gpus": None,
        "anti_affinity": "soft",
        "pdb_max_unavailable": 1,
        "image": "kvtier:0.1.0",
    },
    "all-on": {
        "values": "ci/all-on-values.yaml",
        "release": "cache",
        "namespace": "llm",
        "fullname": "cache-kvtier",
        "objects": {
            ("ConfigMap", "cache-kvtier"), ("ConfigMap", "cache-kvtier-client"), ("Service", "cache-kvtier"), ("Service", "cache-kvtier-headless"),
            ("StatefulSet", "cache-kvtier"), ("ServiceAccount", "kvtier-cache"),
            ("PodDisruptionBudget", "cache-kvtier"), ("ServiceMonitor", "cache-kvtier"),
            ("PrometheusRule", "cache-kvtier"),
        },
        "service_account": "kvtier-cache",
        "replicas": 4,
        "storage": "hostPath",
        "data_path": "/mnt/kvtier",
        "tls_secret": "cache-kvtier-tls",
        "mutual_tls": True,
        "auth_secret": "cache-kvtier-tokens",
        "gpus": 2,
        "anti_affinity": "hard",
        "pdb_max_unavailable": 2,
        "image": "registry.example.com/kvtier:0.1.0-test",
    },
    "dram-only": {
        "values": "ci/dram-only-values.yaml",
        "release": "kvtier",
        "namespace": "default",
        "fullname": "kvtier",
        "objects": {
            ("ConfigMap", "kvtier"), ("ConfigMap", "kvtier-client"), ("Service", "kvtier"), ("Service", "kvtier-headless"), ("StatefulSet", "kvtier"),
        },
        "service_account": "default",
        "replicas": 1,
        "storage": "none",
        "data_path": None,
        "tls_secret": None,
        "mutual_tls": False,
        "auth_secret": None,
        "gpus": None,
        "anti_affinity": "none",
        "pdb_max_unavailable": None,
        "image": "kvtier:0.1.0",
    },
}

GRPC_PORT = 7070
METRICS_PORT = 9090
CONFIG_PATH = "/etc/kvtier/kvtier.yaml"
TLS_DIR = "/etc/kvtier/tls"
ARGS = ["/usr/local/bin/kvtier", "serve", "--config", CONFIG_PATH]
# Keys the chart sets itself; everything else in the ConfigMap comes from `config` values.
AUTH_DIR = "/etc/kvtier/auth"
CHART_OWNED_KEYS = {"listen", "metrics_listen", "disk.path", "tls.cert_file", "tls.key_file", "tls.client_ca_file",
                    "auth.tokens_file"}
REQUIRED_ALERTS = {
    # alert name -> metric names its expression must use (from kvstore/src/metrics.cc, or Prometheus' own `up`)
    "KvtierNodeDown": {"up"},
    "KvtierHitRatioCollapse": {"kvtier_hits_total", "kvtier_misses_total"},
    "KvtierDiskErrors": {"kvtier_disk_io_errors_total"},
    "KvtierHostTierNearCapacity": {"kvtier_tier_bytes", "kvtier_tier_capacity_bytes"},
}
# Slowest NVMe write speed the shutdown flush is budgeted for (DESIGN §10 measures 1.2-1.6 GB/s).
FLUSH_BYTES_PER_SECOND = 1.0e9

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def kvtier_bytes(s):
    """A kvtier size (docs/config.md: B, KiB..TiB, KB..TB, or a plain number) in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]i?B|B)?\s*", str(s))
    if not m:
        raise ValueError(f"not a kvtier size: {s!r}")
    unit = m.group(2) or "B"
    scale = {"B": 1}
    for i, p in enumerate("KMGT", start=1):
        scale[p + "iB"] = 1024 ** i
        scale[p + "B"] = 1000 ** i
    return int(m.group(1)) * scale[unit]


def k8s_bytes(q):
    """A Kubernetes memory quantity (Ki..Ei, k..E, exponent or plain) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?", str(q))
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    scale = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
    for i, p in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"], start=1):
        scale[p] = 1024 ** i
    return float(m.group(1)) * scale[m.group(2)]


def documented_config(repo):
    """docs/config.md's table: key -> parsed default."""
    keys = {}
    for line in (repo / "docs/config.md").read_text().splitlines():
        m = re.match(r"\|\s*`([a-z_.]+)`\s*\|\s*`([^`]*)`\s*\|", line)
        if m:
            keys[m.group(1)] = yaml.safe_load(m.group(2))
    if not keys:
        errors.append("docs/config.md: no key table found")
    return keys


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v  # a scalar, or an empty map such as quotas.namespaces: {}
    return out


def exported_metrics(repo):
    text = (repo / "kvstore/src/metrics.cc").read_text()
    return set(re.findall(r'"(kvtier_[a-z0-9_]+)"', text))


def load_docs(path):
    docs = []
    for doc in yaml.safe_load_all(Path(path).read_text()):
        if doc is not None:
            docs.append(doc)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def enabled_paths(values, prefix=""):
    """Paths of every `enabled` switch in a values tree."""
    out = []
    for k, v in values.items():
        if isinstance(v, dict):
            out += enabled_paths(v, f"{prefix}{k}.")
        elif k == "enabled":
            out.append(prefix + k)
    return out


def lookup(values, path):
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def check_metadata(docs, case):
    seen = set()
    for d in docs:
        kind, meta = d.get("kind"), d.get("metadata") or {}
        name = meta.get("name", "")
        where = f"{kind}/{name}"
        check(d.get("apiVersion") and kind and name, f"document without apiVersion, kind or name: {d!r:.200}")
        check((kind, name) not in seen, f"{where}: rendered twice")
        seen.add((kind, name))
        check(meta.get("namespace") == case["namespace"],
              f"{where}: namespace {meta.get('namespace')!r}, want the release's {case['namespace']!r}")
        check(len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name or "-"),
              f"{where}: not a DNS label")
        labels = meta.get("labels") or {}
        for key, want in (("app.kubernetes.io/instance", case["release"]), ("app.kubernetes.io/managed-by", "Helm")):
            check(labels.get(key) == want, f"{where}: label {key}={labels.get(key)!r}, want {want!r}")
    check(seen == case["objects"],
          f"objects: got {sorted(seen)}, want {sorted(case['objects'])} "
          f"(extra {sorted(seen - case['objects'])}, missing {sorted(case['objects'] - seen)})")


def check_config(cm, case, repo):
    documented = documented_config(repo)
    data = cm.get("data") or {}
    if not check("kvtier.yaml" in data, "ConfigMap: no kvtier.yaml key"):
        return {}
    try:
        config = yaml.safe_load(data["kvtier.yaml"])
    except yaml.YAMLError as e:
        errors.append(f"ConfigMap kvtier.yaml does not parse: {e}")
        return {}
    if not check(isinstance(config, dict), "ConfigMap kvtier.yaml is not a mapping"):
        return {}
    flat = flatten(config)
    for key in flat:
        check(key in documented, f"ConfigMap kvtier.yaml: key {key!r} is not in docs/config.md (kvtier refuses it)")
    check(flat.get("listen") == f"0.0.0.0:{GRPC_PORT}", f"config listen {flat.get('listen')!r}")
    check(flat.get("metrics_listen") == f"0.0.0.0:{METRICS_PORT}",
          f"config metrics_listen {flat.get('metrics_listen')!r}")
    if case["data_path"] is None:
        check(not any(k.startswith("disk.") for k in flat), "config has a disk section without an NVMe tier volume")
    else:
        check(flat.get("disk.path") == case["data_path"],
              f"config disk.path {flat.get('disk.path')!r}, want the data mount {case['data_path']!r}")
    want_tls = {}
    if case["tls_secret"] is not None:
        want_tls = {"tls.cert_file": f"{TLS_DIR}/tls.crt", "tls.key_file": f"{TLS_DIR}/tls.key"}
        if case["mutual_tls"]:
            want_tls["tls.client_ca_file"] = f"{TLS_DIR}/ca.crt"
    got_tls = {k: v for k, v in flat.items() if k.startswith("tls.")}
    check(got_tls == want_tls, f"config tls keys {got_tls}, want {want_tls} (the mounted Secret's files)")
    want_auth = {} if case["auth_secret"] is None else {"auth.tokens_file": f"{AUTH_DIR}/tokens.yaml"}
    got_auth = {k: v for k, v in flat.items() if k.startswith("auth.")}
    check(got_auth == want_auth, f"config auth keys {got_auth}, want {want_auth} (the mounted Secret's file)")
    if case["values"] is None:
        # The chart's defaults are kvtier's: same keys (all of them) and same values as docs/config.md.
        for key, want in documented.items():
            if key in CHART_OWNED_KEYS:
                continue
            check(key in flat, f"docs/config.md documents {key!r}: add it with its default to `config` in "
                               "deploy/helm/kvtier/values.yaml, or make the chart set it (CHART_OWNED_KEYS)")
            if key in flat:
                check(flat[key] == want, f"values.yaml config {key}: {flat[key]!r}, docs/config.md default {want!r}")
    return flat


def check_services(docs, sts, case):
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    headless = services.get(case["fullname"] + "-headless")
    regular = services.get(case["fullname"])
    selector = sts["spec"]["selector"]["matchLabels"]
    check(sts["spec"].get("serviceName") == case["fullname"] + "-headless",
          f"StatefulSet serviceName {sts['spec'].get('serviceName')!r} is not the headless Service")
    for svc, is_headless in ((headless, True), (regular, False)):
        if svc is None:
            continue
        name, spec = svc["metadata"]["name"], svc["spec"]
        if is_headless:
            check(spec.get("clusterIP") == "None", f"Service {name}: clusterIP {spec.get('clusterIP')!r}, want None")
            check(spec.get("publishNotReadyAddresses") is False,
                  f"Service {name}: publishNotReadyAddresses must be false (not-ready pods must get no keys)")
        else:
            check(spec.get("clusterIP") != "None", f"Service {name}: must not be headless")
        check(spec.get("selector") == selector, f"Service {name}: selector {spec.get('selector')} != pods' {selector}")
        ports = {p.get("name"): p for p in spec.get("ports", [])}
        for pname, port in (("grpc", GRPC_PORT), ("metrics", METRICS_PORT)):
            p = ports.get(pname)
            if check(p is not None, f"Service {name}: no {pname} port"):
                check(p.get("port") == port and p.get("targetPort") == pname and p.get("protocol") == "TCP",
                      f"Service {name}: port {pname} is {p}, want {port}/TCP to the container's {pname!r} port")
    return headless, regular


def check_statefulset(sts, config, case, repo):
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    check(spec.get("replicas") == case["replicas"], f"replicas {spec.get('replicas')}, want {case['replicas']}")
    tmpl_labels = spec["template"]["metadata"].get("labels") or {}
    for k, v in spec["selector"]["matchLabels"].items():
        check(tmpl_labels.get(k) == v, f"pod template lacks selector label {k}={v}")
    annotations = spec["template"]["metadata"].get("annotations") or {}
    check(re.fullmatch(r"[0-9a-f]{64}", str(annotations.get("checksum/config", ""))),
          "pod template lacks the checksum/config annotation that rolls pods on a config change")
    check(pod.get("serviceAccountName") == case["service_account"],
          f"serviceAccountName {pod.get('serviceAccountName')!r}, want {case['service_account']!r}")
    check(pod.get("automountServiceAccountToken") is False, "the pods must not mount a service account token")

    psc = pod.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0,
          "pod securityContext.runAsUser must be non-zero")
    check(isinstance(psc.get("fsGroup"), int) and psc["fsGroup"] > 0,
          "pod securityContext.fsGroup must be set (writable data volume)")

    grace = pod.get("terminationGracePeriodSeconds")
    documented = documented_config(repo)
    need = config.get("shutdown_grace_ms", documented.get("shutdown_grace_ms", 0)) / 1000
    if config.get("disk.flush_on_shutdown", True) and "disk.path" in config:
        need += kvtier_bytes(config.get("host_tier.capacity", "4GiB")) / FLUSH_BYTES_PER_SECOND
    check(isinstance(grace, int) and grace >= need,
          f"terminationGracePeriodSeconds {grace} does not cover shutdown_grace_ms + flush of host_tier.capacity "
          f"(~{need:.0f} s)")

    containers = pod.get("containers") or []
    if not check(len(containers) == 1 and containers[0].get("name") == "kvtier", "want exactly one container, kvtier"):
        return
    c = containers[0]
    check(c.get("image") == case["image"], f"image {c.get('image')!r}, want {case['image']!r}")
    check((c.get("command") or []) + (c.get("args") or []) == ARGS,
          f"command+args {(c.get('command') or []) + (c.get('args') or [])}, want {ARGS}")
    ports = {p.get("name"): p for p in c.get("ports", [])}
    for pname, port in (("grpc", GRPC_PORT), ("metrics", METRICS_PORT)):
        p = ports.get(pname) or {}
        check(p.get("containerPort") == port and p.get("protocol", "TCP") == "TCP",
              f"container port {pname}: {p}, want {port}/TCP")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe) or {}
        if case["tls_secret"] is None:
            check((p.get("grpc") or {}).get("port") == GRPC_PORT,
                  f"{probe}: want a native grpc probe on port {GRPC_PORT}, got {p}")
        else:
            # The kubelet's grpc probe has no TLS: with TLS the probes must use the plain metrics endpoint.
            check(p.get("httpGet") == {"path": "/metrics", "port": "metrics"},
                  f"{probe}: with TLS want httpGet /metrics on the metrics port, got {p}")
        check(sum(k in p for k in ("grpc", "httpGet", "exec", "tcpSocket")) == 1, f"{probe}: want one handler")
    csc = c.get("securityContext") or {}
    check(csc.get("runAsNonRoot") is True, "container securityContext.runAsNonRoot must be true")
    check(csc.get("readOnlyRootFilesystem") is True, "container securityContext.readOnlyRootFilesystem must be true")
    check(csc.get("allowPrivilegeEscalation") is False,
          "container securityContext.allowPrivilegeEscalation must be false")
    check(not csc.get("privileged"), "container must not be privileged")
    caps = csc.get("capabilities") or {}
    check("ALL" in (caps.get("drop") or []) and not caps.get("add"), f"capabilities {caps}: want drop [ALL], add none")

    limits = (c.get("resources") or {}).get("limits") or {}
    if check("memory" in limits, "no memory limit"):
        check(k8s_bytes(limits["memory"]) > kvtier_bytes(config.get("host_tier.capacity", "4GiB")),
              f"memory limit {limits['memory']} does not hold host_tier.capacity {config.get('host_tier.capacity')}")
    check(limits.get("nvidia.com/gpu") == case["gpus"],
          f"nvidia.com/gpu limit {limits.get('nvidia.com/gpu')}, want {case['gpus']}")

    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    for name in mounts:
        check(name in volumes or name in claims, f"volumeMount {name} has no volume")
    for name in volumes:
        check(name in mounts, f"volume {name} is not mounted")
    m = mounts.get("config") or {}
    check(m.get("mountPath") == CONFIG_PATH and m.get("subPath") == "kvtier.yaml" and m.get("readOnly") is True,
          f"config mount {m}, want {CONFIG_PATH} (subPath kvtier.yaml, read-only)")
    check((volumes.get("config") or {}).get("configMap", {}).get("name") == case["fullname"],
          "config volume is not the chart's ConfigMap")
    m = mounts.get("tmp") or {}
    check(m.get("mountPath") == "/tmp" and not m.get("readOnly") and "emptyDir" in (volumes.get("tmp") or {}),
          "want a writable emptyDir at /tmp (the root file system is read-only)")

    data = mounts.get("data")
    if case["storage"] == "none":
        check(data is None and "data" not in claims, "a data volume without an NVMe tier")
    elif check(data is not None, "no data volume mount"):
        check(data.get("mountPath") == case["data_path"] and not data.get("readOnly"),
              f"data mount {data}, want writable {case['data_path']}")
        if case["storage"] == "pvc":
            t = claims.get("data") or {}
            request = (t.get("spec") or {}).get("resources", {}).get("requests", {}).get("storage")
            check("data" not in volumes and request,
                  "pvc storage: want a volumeClaimTemplate 'data' with a storage request")
        else:
            check(case["storage"] in (volumes.get("data") or {}) and not claims,
                  f"data volume is not {case['storage']}: {volumes.get('data')}")
    tls = mounts.get("tls")
    if case["tls_secret"] is None:
        check(tls is None and "tls" not in volumes, "TLS mounted while off")
    elif check(tls is not None, "TLS on but no tls mount"):
        check(tls.get("mountPath") == TLS_DIR and tls.get("readOnly") is True,
              f"tls mount {tls}, want read-only {TLS_DIR}")
        check((volumes.get("tls") or {}).get("secret", {}).get("secretName") == case["tls_secret"],
              f"tls volume {volumes.get('tls')}, want Secret {case['tls_secret']!r}")
    auth = mounts.get("auth")
    if case["auth_secret"] is None:
        check(auth is None and "auth" not in volumes, "token Secret mounted while auth is off")
    elif check(auth is not None, "auth on but no auth mount"):
        check(auth.get("mountPath") == AUTH_DIR and auth.get("readOnly") is True,
              f"auth mount {auth}, want read-only {AUTH_DIR}")
        check((volumes.get("auth") or {}).get("secret", {}).get("secretName") == case["auth_secret"],
              f"auth volume {volumes.get('auth')}, want Secret {case['auth_secret']!r}")

    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    want = {"hard": "requiredDuringSchedulingIgnoredDuringExecution",
            "soft": "preferredDuringSchedulingIgnoredDuringExecution"}.get(case["anti_affinity"])
    check((want in anti) if want else not anti, f"podAntiAffinity {anti}, want {case['anti_affinity']}")


def check_monitoring(docs, headless, regular, case, repo):
    monitors = by_kind(docs, "ServiceMonitor")
    for sm in monitors:
        sel = sm["spec"]["selector"]["matchLabels"]
        matches = [s["metadata"]["name"] for s in (headless, regular)
                   if s and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        check(matches == [case["fullname"] + "-headless"],
              f"ServiceMonitor selects {matches}, want only the headless Service (each pod scraped once)")
        check(sm["spec"].get("namespaceSelector", {}).get("matchNames") == [case["namespace"]],
              "ServiceMonitor namespaceSelector is not the release namespace")
        ports = [e.get("port") for e in sm["spec"].get("endpoints", [])]
        check(ports == ["metrics"], f"ServiceMonitor endpoints {ports}, want the metrics port")
    metrics = exported_metrics(repo) | {"up"}
    job = f'job="{case["fullname"]}-headless"'
    for rule in by_kind(docs, "PrometheusRule"):
        alerts = {}
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                alerts[r.get("alert")] = r
        for name, needed in REQUIRED_ALERTS.items():
            r = alerts.get(name)
            if not check(r is not None, f"PrometheusRule lacks {name}"):
                continue
            used = set(re.findall(r"\b(kvtier_[a-z0-9_]+|up)\b(?=\s*\{)", r["expr"]))
            check(needed <= used, f"{name}: expression uses {sorted(used)}, must use {sorted(needed)}")
        for name, r in alerts.items():
            expr = r.get("expr", "")
            for metric in set(re.findall(r"\bkvtier_[a-z0-9_]+", expr)):
                check(metric in metrics, f"{name}: {metric} is not exported (kvstore/src/metrics.cc)")
            check(job in expr, f"{name}: expression does not select the scrape job {job}")
            check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                  f"{name}: unbalanced expression")
            check(r.get("labels", {}).get("severity") in ("info", "warning", "critical"), f"{name}: no severity")
            check("summary" in (r.get("annotations") or {}), f"{name}: no summary")


def check_client_config(cm, case):
    if not check(cm is not None, "no client ConfigMap"):
        return
    data = cm.get("data") or {}
    want_dns = f"{case['fullname']}-headless.{case['namespace']}.svc.cluster.local:{GRPC_PORT}"
    check(data.get("KVTIER_DNS_NAME") == want_dns, f"client ConfigMap KVTIER_DNS_NAME {data.get('KVTIER_DNS_NAME')!r}, "
          f"want {want_dns!r} (the headless Service)")
    replicas = data.get("KVTIER_REPLICAS", "")
    check(replicas.isdigit() and int(replicas) >= 1, f"client ConfigMap KVTIER_REPLICAS {replicas!r}")
    check(data.get("KVTIER_RESOLVE_INTERVAL_MS", "").isdigit(), "client ConfigMap KVTIER_RESOLVE_INTERVAL_MS")


def check_case(case_name, rendered, repo):
    case = CASES[case_name]
    docs = load_docs(rendered)
    check_metadata(docs, case)
    cms = {c["metadata"]["name"]: c for c in by_kind(docs, "ConfigMap")}
    server_cm = cms.get(case["fullname"])
    config = check_config(server_cm, case, repo) if server_cm else {}
    check_client_config(cms.get(case["fullname"] + "-client"), case)
    stss = by_kind(docs, "StatefulSet")
    if not check(len(stss) == 1, "want exactly one StatefulSet"):
        return
    sts = stss[0]
    check_statefulset(sts, config, case, repo)
    headless, regular = check_services(docs, sts, case)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        check(pdb["apiVersion"] == "policy/v1", "PodDisruptionBudget must be policy/v1")
        check(pdb["spec"].get("selector", {}).get("matchLabels") == sts["spec"]["selector"]["matchLabels"],
              "PodDisruptionBudget does not select the pods")
        check(pdb["spec"].get("maxUnavailable") == case["pdb_max_unavailable"],
              f"PodDisruptionBudget maxUnavailable {pdb['spec'].get('maxUnavailable')}")
    check_monitoring(docs, headless, regular, case, repo)

    chart_dir = repo / "deploy/helm/kvtier"
    if case["values"] is None:
        chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
        project = re.search(r"project\(kvtier VERSION ([0-9.]+)", (repo / "CMakeLists.txt").read_text())
        check(project and chart.get("appVersion") == project.group(1),
              f"Chart.yaml appVersion {chart.get('appVersion')!r} != kvtier's version in CMakeLists.txt")
    if case_name == "all-on":
        # "all on" must stay all on: every `enabled` switch of values.yaml is true there.
        defaults = yaml.safe_load((chart_dir / "values.yaml").read_text())
        overrides = yaml.safe_load((chart_dir / case["values"]).read_text())
        for path in enabled_paths(defaults):
            check(lookup(overrides, path) is True, f"{case['values']}: {path} is not turned on")


def extract_rules(rendered, out):
    groups = []
    for d in load_docs(rendered):
        if d.get("kind") == "PrometheusRule":
            groups += d["spec"]["groups"]
    Path(out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return 0 if groups else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "--rules":
        return extract_rules(argv[2], argv[3])
    if len(argv) != 4 or argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        return 2
    case_name, rendered, repo = argv[1], argv[2], Path(argv[3])
    try:
        check_case(case_name, rendered, repo)
    except (KeyError, TypeError, AttributeError, ValueError, yaml.YAMLError) as e:
        errors.append(f"malformed manifests ({type(e).__name__}: {e})")
    for e in errors:
        print(f"FAIL [{case_name}] {e}")
    if not errors:
        print(f"ok   [{case_name}] {len(load_docs(rendered))} objects")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
