"""A CPU backend for verl: the ``cpu`` platform (``VERL_PLATFORM=cpu``), the ``hf`` rollout
(``actor_rollout_ref.rollout.name=hf``), verl's own ``vllm`` rollout with vLLM's CPU build (``vllm_rollout``), an
in-process harness and a launcher. It exists to smoke-test configs and run the tests and the demo without a GPU; it
is independent of the two algorithms.

Layer 4 (methods and backend); its patch table (``cpu.patches``) is layer 5, its launcher (``cpu.launch``) layer 7.
"""
