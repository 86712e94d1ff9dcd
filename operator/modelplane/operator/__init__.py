"""ModelDeployment operator (kopf): from one YAML to a GPU serving Deployment."""
