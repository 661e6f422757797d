/* placeholder until the module lands */
typedef int cr_client_placeholder;
