"""Built-in losses: functions of batched logits returning a scalar mean."""
