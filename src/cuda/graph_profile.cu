// Where the time of a captured graph goes (MLXN_PROFILE_GRAPH=1, a development aid): every
// prefix of the graph's nodes is instantiated and replayed on its own, and a node's cost is the
// time its prefix takes over the prefix without it, i.e. what the node adds to the critical
// path of the real replay (launch gaps, overlap with programmatic dependent launch included),
// which profilers that serialize kernels cannot show. Prints the costs grouped by kernel name
// and the first nodes in order to stderr. Nodes are taken in the order cudaGraphGetNodes gives,
// which for captured graphs has been their creation order (a topological one; not documented).
// The prefixes run the graph's side effects again and again: meant for graphs whose replay is
// idempotent, such as the model's decode step.

#include <cuda_runtime.h>
#include <cxxabi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

namespace {

// The kernel's name without its argument list (template arguments kept), or the node type.
std::string node_name(cudaGraphNode_t n)
{
    cudaGraphNodeType t;
    if (cudaGraphNodeGetType(n, &t) != cudaSuccess)
        return "?";
    if (t != cudaGraphNodeTypeKernel)
        return t == cudaGraphNodeTypeMemcpy ? "(memcpy)" : t == cudaGraphNodeTypeMemset ? "(memset)" : "(other node)";
    cudaKernelNodeParams p;
    const char *mangled = nullptr;
    if (cudaGraphKernelNodeGetParams(n, &p) != cudaSuccess || cudaFuncGetName(&mangled, p.func) != cudaSuccess) {
        // kernels of other libraries (cuBLAS) have no name here; the error is not left for the
        // caller's next launch check
        (void)cudaGetLastError();
        return "(kernel)";
    }
    int st = 0;
    char *d = abi::__cxa_demangle(mangled, nullptr, nullptr, &st);
    std::string s = st == 0 && d ? d : mangled;
    free(d);
    // drop the argument list: the last top-level '(' (names such as "(anonymous namespace)::" come first)
    size_t cut = std::string::npos;
    int depth = 0;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '<')
            depth++;
        else if (s[i] == '>')
            depth--;
        else if (s[i] == '(' && depth == 0 && s.compare(i, 11, "(anonymous ") != 0)
            cut = i;
    }
    if (cut != std::string::npos)
        s.resize(cut);
    const std::string anon = "(anonymous namespace)::";
    for (size_t p; (p = s.find(anon)) != std::string::npos;)
        s.erase(p, anon.size());
    return s;
}

// Microseconds per replay of the first j nodes of g (0 on failure).
double prefix_us(cudaGraph_t g, const std::vector<cudaGraphNode_t> &nodes, size_t j, cudaStream_t s,
                 cudaEvent_t e0, cudaEvent_t e1)
{
    cudaGraph_t c = nullptr;
    cudaGraphExec_t x = nullptr;
    double us = 0;
    if (cudaGraphClone(&c, g) != cudaSuccess)
        return 0;
    for (size_t i = nodes.size(); i-- > j;) {
        cudaGraphNode_t cn;
        if (cudaGraphNodeFindInClone(&cn, nodes[i], c) == cudaSuccess)
            cudaGraphDestroyNode(cn);
    }
    if (cudaGraphInstantiate(&x, c, 0) == cudaSuccess) {
        const int warm = 3, reps = 20;
        for (int r = 0; r < warm; r++)
            cudaGraphLaunch(x, s);
        cudaEventRecord(e0, s);
        for (int r = 0; r < reps; r++)
            cudaGraphLaunch(x, s);
        cudaEventRecord(e1, s);
        float ms = 0;
        if (cudaEventSynchronize(e1) == cudaSuccess && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess)
            us = 1000.0 * ms / reps;
        cudaGraphExecDestroy(x);
    }
    cudaGraphDestroy(c);
    return us;
}

} // namespace

extern "C" void mlxn_cuda_graph_profile(cudaGraph_t g, cudaStream_t s)
{
    size_t n = 0;
    if (cudaGraphGetNodes(g, nullptr, &n) != cudaSuccess || n == 0)
        return;
    std::vector<cudaGraphNode_t> nodes(n);
    if (cudaGraphGetNodes(g, nodes.data(), &n) != cudaSuccess)
        return;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        if (e0)
            cudaEventDestroy(e0);
        (void)cudaGetLastError();
        return;
    }
    std::vector<double> t(n + 1, 0.0);
    for (size_t j = 1; j <= n; j++)
        t[j] = prefix_us(g, nodes, j, s, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    (void)cudaGetLastError(); // a failed prefix is reported as 0 us, not left for the next call
    struct group { std::string name; int count; double us; };
    std::vector<group> groups;
    fprintf(stderr, "graph profile: %zu nodes, %.1f us per replay\n  first nodes (us added to the replay):\n", n, t[n]);
    for (size_t j = 1; j <= n; j++) {
        const std::string name = node_name(nodes[j - 1]);
        const double d = t[j] - t[j - 1];
        if (j <= 40)
            fprintf(stderr, "  %4zu %8.2f  %s\n", j, d, name.c_str());
        size_t k = 0;
        while (k < groups.size() && groups[k].name != name)
            k++;
        if (k == groups.size())
            groups.push_back({name, 0, 0.0});
        groups[k].count++;
        groups[k].us += d;
    }
    fprintf(stderr, "  by kernel: count, us total, us each, share\n");
    for (const group &gr : groups)
        fprintf(stderr, "  %4d %9.1f %7.2f %5.1f%%  %s\n", gr.count, gr.us, gr.us / gr.count,
                t[n] > 0 ? 100.0 * gr.us / t[n] : 0.0, gr.name.c_str());
}
