"""
The kube-apiserver versions the emulator can answer as, and what differs between them.

Recorded side by side (``tests/emulator/recordings/v1.24`` and ``v1.28``, the same
kubectl session against each), the two versions answer every request a watcher
makes alike but for one thing: when a manager's ``managedFields`` entry gets a
new ``time``. v1.24 leaves an entry alone unless the manager's field set changes
(a second ``kubectl apply`` that only changes a value keeps the first apply's
time, and so do the deployment controller's writes that only change counts);
v1.28 stamps the writer's entry on every write that changes the object.
Everything else follows the same rules (``fields``, ``kinds``).
"""
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class KubeVersion:
    minor: int
    git_version: str
    go_version: str
    every_write_stamps_its_manager: bool
    """v1.28: the writer's managedFields ``time`` moves even when its field set does not."""

    def version_body(self) -> dict[str, Any]:
        """``GET /version``, with the fields the recorded ``version.json`` has."""
        return {'major': '1', 'minor': str(self.minor), 'gitVersion': self.git_version,
                'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
                'buildDate': '2023-08-15T00:00:00Z', 'goVersion': self.go_version, 'compiler': 'gc',
                'platform': 'linux/amd64'}


V1_24 = KubeVersion(24, 'v1.24.17', 'go1.20.10', every_write_stamps_its_manager=False)
V1_28 = KubeVersion(28, 'v1.28.0', 'go1.20.7', every_write_stamps_its_manager=True)
DEFAULT = V1_24
