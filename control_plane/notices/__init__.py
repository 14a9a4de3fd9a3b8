"""Customer delay notices: rows written with the order change that made an order late (an outbox),
coalesced per customer and incident, rendered in the customer's language, sent through channels."""
