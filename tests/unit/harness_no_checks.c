/* The unit-test harness itself: a run that makes no checks proves nothing, so CR_TEST_END()
 * must fail it (a test that cannot run exits 77 and says why). Registered in
 * tests/CMakeLists.txt as unit.harness_no_checks, which passes only when this program exits
 * 1 and says so; it is not named test_*.c, so the unit-test glob does not pick it up. */
#include "common/test.h"

int main(void)
{
    CR_TEST_BEGIN();
    return CR_TEST_END();
}
