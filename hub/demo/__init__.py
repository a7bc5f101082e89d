"""`atelier demo`: the hub, an embedded broker and simulated machines in one process.

`run` is the command, `seed` its lab (machines, members, badges, logins), `embedded_broker`
the amqtt broker it starts when no broker is given.
"""
