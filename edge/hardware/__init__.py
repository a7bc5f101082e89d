"""Badge readers and gpiozero outputs/inputs."""
