"""A student server that never starts: a syntax error on its second line."""
def serve(conn)
    return conn
