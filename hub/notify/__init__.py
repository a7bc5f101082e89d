"""Channel senders (email, webhooks) and the worker that empties the notification outbox."""
