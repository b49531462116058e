"""TFDS dataset builders of maxmicro (`tfds build tfds_builders/<name>`)."""
