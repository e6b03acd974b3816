"""
The Kubernetes "restricted" Pod Security Standard, checked offline on a pod template.

Admission (the namespace's ``pod-security.kubernetes.io/enforce: restricted`` label)
is the real judge, and the e2e test asks a real API server for it; this module lets
every test run check the same controls without one. It follows the standard's list
of controls (kubernetes.io/docs/concepts/security/pod-security-standards, policy
version "latest"): every Baseline control, then the Restricted ones.
"""
from typing import Any

Obj = dict[str, Any]

RESTRICTED_VOLUMES = {'configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim',
                      'projected', 'secret'}
SAFE_SYSCTLS = {'kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range',
                'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies',
                'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports',
                'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl',
                'net.ipv4.tcp_keepalive_probes'}
SELINUX_TYPES = {'', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'}


def violations(pod: Obj) -> list[str]:
    """Every control of the restricted profile this pod spec breaks (empty: it passes)."""
    found: list[str] = []
    pod_context: Obj = pod.get('securityContext') or {}
    containers: list[Obj] = [*pod.get('initContainers', []), *pod.get('containers', []),
                             *pod.get('ephemeralContainers', [])]
    contexts = [(c.get('name', '?'), c.get('securityContext') or {}) for c in containers]

    # Baseline.
    for field in ('hostNetwork', 'hostPID', 'hostIPC'):
        if pod.get(field):
            found.append(f'host namespaces: {field}')
    for name, context in [('pod', pod_context), *contexts]:
        if (context.get('windowsOptions') or {}).get('hostProcess'):
            found.append(f'{name}: HostProcess')
        selinux = context.get('seLinuxOptions') or {}
        if selinux.get('type', '') not in SELINUX_TYPES or selinux.get('user') or selinux.get('role'):
            found.append(f'{name}: SELinux options {selinux}')
        if (context.get('seccompProfile') or {}).get('type') == 'Unconfined':
            found.append(f'{name}: seccomp Unconfined')
        if (context.get('appArmorProfile') or {}).get('type') not in (None, 'RuntimeDefault', 'Localhost'):
            found.append(f'{name}: AppArmor {context["appArmorProfile"]}')
    for name, context in contexts:
        if context.get('privileged'):
            found.append(f'{name}: privileged')
        if context.get('procMount', 'Default') != 'Default':
            found.append(f'{name}: procMount {context["procMount"]}')
    for container in containers:
        for port in container.get('ports', []):
            if port.get('hostPort'):
                found.append(f'{container.get("name")}: hostPort {port["hostPort"]}')
    for sysctl in pod_context.get('sysctls', []):
        if sysctl.get('name') not in SAFE_SYSCTLS:
            found.append(f'unsafe sysctl {sysctl.get("name")}')
    for volume in pod.get('volumes', []):
        kinds = set(volume) - {'name'}
        if kinds - RESTRICTED_VOLUMES:  # hostPath (baseline) and every other non-restricted type
            found.append(f'volume {volume.get("name")}: {sorted(kinds - RESTRICTED_VOLUMES)}')

    # Restricted.
    pod_non_root = pod_context.get('runAsNonRoot') is True
    pod_seccomp = (pod_context.get('seccompProfile') or {}).get('type') in ('RuntimeDefault', 'Localhost')
    if pod_context.get('runAsUser') == 0:
        found.append('pod: runAsUser 0')
    for name, context in contexts:
        if context.get('allowPrivilegeEscalation') is not False:
            found.append(f'{name}: allowPrivilegeEscalation is not false')
        if context.get('runAsNonRoot') is False or not (pod_non_root or context.get('runAsNonRoot') is True):
            found.append(f'{name}: runAsNonRoot is not true')
        if context.get('runAsUser') == 0:
            found.append(f'{name}: runAsUser 0')
        seccomp = (context.get('seccompProfile') or {}).get('type')
        if not (seccomp in ('RuntimeDefault', 'Localhost') or (seccomp is None and pod_seccomp)):
            found.append(f'{name}: seccompProfile is not RuntimeDefault or Localhost')
        capabilities = context.get('capabilities') or {}
        if 'ALL' not in capabilities.get('drop', []):
            found.append(f'{name}: capabilities do not drop ALL')
        if set(capabilities.get('add', [])) - {'NET_BIND_SERVICE'}:
            found.append(f'{name}: capabilities add {capabilities["add"]}')
    return found
