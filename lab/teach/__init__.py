"""What the study notebooks use: the exercises checked against the learner's own capture
(exercises), and small helpers for choosing a capture, asking whether a lab is up,
crafting packets in it and drawing the TCP states (notebook)."""
