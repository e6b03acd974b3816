"""
The kube-apiserver versions the emulator can answer as, and what differs between them.

Every version here is recorded (``tests/emulator/recordings/v1.*``: the same
kubectl session and watches against each) and every difference the recordings
show is a field of :class:`KubeVersion`, so that ``tests/emulator`` can hold the
emulator to each. ``DEFAULT`` is the newest, v1.37: a watcher meets it in new
clusters, so the emulator answers as it unless a test pins an older one (the
older ones stay modelled: clusters still run them, and their recordings stay
tested). What all versions do alike follows the same rules (``fields``, ``kinds``).
"""
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class KubeVersion:
    minor: int
    git_version: str
    go_version: str
    every_write_stamps_its_manager: bool
    """v1.28+: the writer's managedFields ``time`` moves even if its field set does not (v1.24: not)."""
    unversioned_watch_bookmarks: bool
    """v1.24, v1.34, v1.37: a watch without a resourceVersion gets BOOKMARKs (cacher); v1.28: none."""
    initial_events_end_bookmark: bool
    """v1.34+: a watch from no or "0" resourceVersion ends its ADDEDs with a BOOKMARK; v1.24, v1.28: not."""
    cacher_follows_the_cluster: bool
    """v1.34+: the watch cache's version (BOOKMARKs') catches up with the cluster's; v1.24, v1.28: not."""
    null_creation_timestamps: bool
    """v1.24, v1.28: an unset ``creationTimestamp`` is ``null`` (BOOKMARK, template); v1.34+: left out."""
    compatibility_versions: bool
    """v1.34, v1.37: ``/version`` has ``emulation*``, ``minCompatibility*`` (v1.31+); v1.24, v1.28: not."""
    terminating_replicas: bool
    """v1.37: ``status.terminatingReplicas`` is on (v1.35+), 0 too; v1.24-v1.34: a status write drops it."""
    label_errors_in_bytes: bool
    """v1.37: a bad selector's key or value is "no more than 63 bytes", a key with two '/' not "a
    valid label key" (``api/validate/content``); v1.34: "63 characters", "a qualified name"
    (``v1.*/selector-refused.json``; v1.24 and v1.28, unrecorded, are given v1.34's words)."""
    knows_send_initial_events: bool
    """v1.27+: ``ListOptions`` has ``sendInitialEvents`` (KEP-3157); v1.24's decoder drops it and its
    validation refuses any ``resourceVersionMatch`` on a watch (``watchlist``)."""
    watch_list: bool
    """v1.34+: the ``WatchList`` gate is on by default (beta): streaming lists are served
    (``v1.3*/watchlist-*.json``); v1.28: alpha, off, refused with a 422. ``ApiServer(watch_list=)``
    overrides it, as ``--feature-gates=WatchList=`` does (``v1.37/watchlist-gate-off.json``)."""
    watch_list_compression: bool
    """v1.37: ``WatchListCompression`` (beta, on since v1.37) gzips a streaming list whose client
    accepts gzip, one member per flush (``v1.37/watchlist-gzip.json``); v1.34: never."""

    def version_body(self) -> dict[str, Any]:
        """``GET /version``, with the fields the recorded ``version.json`` has."""
        body = {'major': '1', 'minor': str(self.minor)}
        if self.compatibility_versions:  # KEP-4330
            body.update({'emulationMajor': '1', 'emulationMinor': str(self.minor),
                         'minCompatibilityMajor': '1', 'minCompatibilityMinor': str(self.minor - 1)})
        return {**body, 'gitVersion': self.git_version,
                'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
                'buildDate': '2023-08-15T00:00:00Z', 'goVersion': self.go_version, 'compiler': 'gc',
                'platform': 'linux/amd64'}


V1_24 = KubeVersion(24, 'v1.24.17', 'go1.20.10', every_write_stamps_its_manager=False,
                    unversioned_watch_bookmarks=True, initial_events_end_bookmark=False,
                    cacher_follows_the_cluster=False, null_creation_timestamps=True,
                    compatibility_versions=False, terminating_replicas=False,
                    label_errors_in_bytes=False, knows_send_initial_events=False, watch_list=False,
                    watch_list_compression=False)
V1_28 = KubeVersion(28, 'v1.28.0', 'go1.20.7', every_write_stamps_its_manager=True,
                    unversioned_watch_bookmarks=False, initial_events_end_bookmark=False,
                    cacher_follows_the_cluster=False, null_creation_timestamps=True,
                    compatibility_versions=False, terminating_replicas=False,
                    label_errors_in_bytes=False, knows_send_initial_events=True, watch_list=False,
                    watch_list_compression=False)
V1_34 = KubeVersion(34, 'v1.34.4', 'go1.26.8', every_write_stamps_its_manager=True,
                    unversioned_watch_bookmarks=True, initial_events_end_bookmark=True,
                    cacher_follows_the_cluster=True, null_creation_timestamps=False,
                    compatibility_versions=True, terminating_replicas=False,
                    label_errors_in_bytes=False, knows_send_initial_events=True, watch_list=True,
                    watch_list_compression=False)
# v1.37 answers as v1.34 does, but for the deployment controller's terminatingReplicas, the
# words of a bad selector's 400, and gzip for a streaming list.
V1_37 = dataclasses.replace(V1_34, minor=37, git_version='v1.37.2', terminating_replicas=True,
                            label_errors_in_bytes=True, watch_list_compression=True)
RECORDED = {'v1.24': V1_24, 'v1.28': V1_28, 'v1.34': V1_34, 'v1.37': V1_37}
"""Every version recorded in ``tests/emulator/recordings``, by its folder's name."""
DEFAULT = V1_37
