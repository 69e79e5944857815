//! One live connection: a reader task feeding an inbox, sending, and waiting for messages.
