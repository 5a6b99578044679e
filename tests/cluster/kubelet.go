package main

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const nodeName = "testcluster-node"

// fakeKubelet stands in for a kubelet on one Ready node: it binds unscheduled pods to that node, reports them
// Running and Ready (NotReady when an image tag contains "broken"), runs pods that do not restart
// (Jobs) to completion, ends a pod whose image tag contains "fail" Failed (exit code 1), and removes pods
// that are being deleted. No container runs.
type fakeKubelet struct {
	client kubernetes.Interface
	pods   cache.Indexer
	queue  workqueue.TypedRateLimitingInterface[string]
}

func runFakeKubelet(ctx context.Context, client kubernetes.Interface) error {
	if err := registerNode(ctx, client); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Core().V1().Pods().Informer()
	k := &fakeKubelet{
		client: client,
		pods:   informer.GetIndexer(),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](
			20*time.Millisecond, 5*time.Second)),
	}
	enqueue := func(obj interface{}) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	for i := 0; i < 4; i++ {
		go wait.UntilWithContext(ctx, k.work, time.Second)
	}
	go func() { <-ctx.Done(); k.queue.ShutDown() }()
	return nil
}

func registerNode(ctx context.Context, client kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("5000"),
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{
		"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "fake kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.34.0-fake", OperatingSystem: "linux", Architecture: "amd64"},
	}
	_, err = client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

func (k *fakeKubelet) work(ctx context.Context) {
	for {
		key, quit := k.queue.Get()
		if quit {
			return
		}
		if err := k.sync(ctx, key); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			klog.V(2).InfoS("fake kubelet: retrying", "pod", key, "err", err)
			k.queue.AddRateLimited(key)
		} else {
			k.queue.Forget(key)
		}
		k.queue.Done(key)
	}
}

func (k *fakeKubelet) sync(ctx context.Context, key string) error {
	obj, exists, err := k.pods.GetByKey(key)
	if err != nil || !exists {
		return err
	}
	pod := obj.(*corev1.Pod)
	pods := k.client.CoreV1().Pods(pod.Namespace)
	switch {
	case pod.DeletionTimestamp != nil:
		zero := int64(0)
		return pods.Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	case pod.Spec.NodeName == "":
		return pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
		}, metav1.CreateOptions{})
	case pod.Spec.NodeName != nodeName:
		return nil
	}
	want := desiredStatus(pod)
	if statusMatches(pod.Status, want) {
		return nil
	}
	updated := pod.DeepCopy()
	updated.Status = want
	_, err = pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

// desiredStatus is what a kubelet would report once every container started: Running and Ready for pods that
// restart, Succeeded for pods that do not; an image whose tag contains "broken" keeps the pod NotReady
// (or Failed when it does not restart); an image whose tag contains "fail" ends the pod Failed whatever its
// restart policy (a hook that fails).
func desiredStatus(pod *corev1.Pod) corev1.PodStatus {
	broken, fails := false, false
	for _, c := range pod.Spec.Containers {
		tag := imageTag(c.Image)
		if strings.Contains(tag, "broken") {
			broken = true
		}
		if strings.Contains(tag, "fail") {
			broken, fails = true, true
		}
	}
	started := metav1.Now()
	if pod.Status.StartTime != nil {
		started = *pod.Status.StartTime
	}
	runsOnce := pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	phase := corev1.PodRunning
	switch {
	case fails || (runsOnce && broken):
		phase = corev1.PodFailed
	case runsOnce:
		phase = corev1.PodSucceeded
	}
	ready := phase == corev1.PodRunning && !broken
	message := ""
	if phase == corev1.PodFailed {
		message = "fake kubelet: a container exited with code 1"
	}
	status := corev1.PodStatus{
		Phase:     phase,
		Message:   message,
		HostIP:    "127.0.0.1",
		PodIP:     "10.244.0.10",
		StartTime: &started,
		QOSClass:  pod.Status.QOSClass,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.ContainersReady, Status: condition(ready), LastTransitionTime: started},
			{Type: corev1.PodReady, Status: condition(ready), LastTransitionTime: started},
		},
	}
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "fake://" + c.Image, Ready: ready}
		switch phase {
		case corev1.PodRunning:
			t := true
			cs.Started = &t
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		default:
			code := int32(0)
			if broken {
				code = 1
			}
			reason := "Completed"
			if broken {
				reason = "Error"
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: started}
		}
		status.ContainerStatuses = append(status.ContainerStatuses, cs)
	}
	return status
}

func statusMatches(have, want corev1.PodStatus) bool {
	if have.Phase != want.Phase || len(have.ContainerStatuses) != len(want.ContainerStatuses) {
		return false
	}
	for i := range want.ContainerStatuses {
		if have.ContainerStatuses[i].Image != want.ContainerStatuses[i].Image ||
			have.ContainerStatuses[i].Ready != want.ContainerStatuses[i].Ready {
			return false
		}
	}
	return podReady(have) == podReady(want)
}

func podReady(s corev1.PodStatus) corev1.ConditionStatus {
	for _, c := range s.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func condition(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// imageTag returns the tag of an image reference ("repo/name:tag@digest" -> "tag"), or "" without one.
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}
