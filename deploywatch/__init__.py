"""deploywatch: every apps/v1 Deployment event as one JSON line on stdout, built on Kopf."""
