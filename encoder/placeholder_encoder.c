/* placeholder until the module lands */
typedef int cr_encoder_placeholder;
