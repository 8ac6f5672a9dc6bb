"""Getting models onto edge devices: targets, the champion/challenger gate, the registry, rollout."""
