"""The closed loop over recording rounds (the paper's "days").

Every round is the same: site models fitted on everything recorded before the round
(round 1: on the clean recordings alone) attack the same clean images
(`attacks.untargeted.attack_round`); the round shows the animal, or the simulated brain,
its stimulus set (`stimulus_set`): the attacked clean images, every site's perturbed images
and random-direction images of every eps; its recordings are matched back to the attacks
and noise-corrected (`responses`); and the next round's site models, with
`loop.refit: network` also the surrogate networks, are refitted on them (`refit`,
`finetune`). With a lab's rig, each round's stimulus set is exported and its recordings
ingested and checked (`rig`).
"""
