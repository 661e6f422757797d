/* placeholder until the module lands */
typedef int cr_coordinator_placeholder;
