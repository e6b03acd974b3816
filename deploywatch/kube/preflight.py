"""
Credentials checked before anything connects.

Kopf logs in through the ``kubernetes`` and ``pykube-ng`` clients when its
operator starts, and when neither finds credentials it ends with a traceback
("Ran out of valid credentials"). A missing or broken kubeconfig is the most
common first-run mistake, so deploywatch looks first, the way those clients
do (in-cluster ServiceAccount, else ``KUBECONFIG`` or ``~/.kube/config``), and
says what is wrong in one line.
"""
import os
from collections.abc import Mapping

import kubernetes

from deploywatch.base.settings import Misconfigured

IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'


def check_credentials(environ: Mapping[str, str]) -> None:
    """Return if credentials are there to be found; :class:`Misconfigured` saying what is wrong if not."""
    if environ.get('KUBERNETES_SERVICE_HOST') and os.path.exists(IN_CLUSTER_TOKEN):
        return
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=kubernetes.client.Configuration(), persist_config=False)
    except Exception as error:  # ConfigException, YAML errors, missing files: all the same to a user
        where = environ.get('KUBECONFIG') or '~/.kube/config'
        reason = ' '.join(str(error).split())  # YAML errors span lines: keep it to one
        raise Misconfigured(f"no usable Kubernetes credentials: kubeconfig {where}: {reason}") from None
