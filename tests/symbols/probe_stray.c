/* A library with an unprefixed function and an unprefixed variable beside a
 * prefixed one: check-symbols.sh must name exactly the two strays. */
int probe_ok(void);
int stray_fn(void);
extern int stray_var;

int stray_var;

int stray_fn(void)
{
    return stray_var;
}

int probe_ok(void)
{
    return stray_fn() + 1;
}
