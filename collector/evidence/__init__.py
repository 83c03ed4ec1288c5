"""Evidence files: the signed record a worker takes to arbitration, and its signer."""
