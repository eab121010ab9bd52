/* A library that exports only probe_* names: check-symbols.sh passes it. */
int probe_count(int n);
extern const int probe_table[2];

const int probe_table[2] = {1, 2};

static int helper(int n)
{
    return n + probe_table[1];
}

int probe_count(int n)
{
    return helper(n);
}
