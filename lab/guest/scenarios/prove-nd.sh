# The proof scenario: NVDIMMs at boot, one hotplugged by the host, an fsdax namespace, one real
# hypercall. The work is in prove-nd.ts (one node process: process starts are slow here).
lab_node prove-nd.js
