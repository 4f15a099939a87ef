"""Strategy deployments: brokers, the runner that trades a deployment bar by bar, and its audit."""
