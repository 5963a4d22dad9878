"""Project tools: fault drills, manifest validation, the services they and the tests start."""
